//! The one path from the wire contract to a plugin's typed code, shared by
//! the component export and the native test harness so both behave alike.

use crate::{Context, Error, Request, Settings, Verdict, settings};
use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    /// The last settings parsed, with their text. berth calls a warm
    /// instance with the same settings again and again, so they are parsed
    /// once per instance, not once per request. It holds only what the
    /// settings text determines: nothing of any request.
    static SETTINGS: RefCell<Option<(String, Rc<dyn Any>)>> = const { RefCell::new(None) };
}

pub fn validate_settings<S: Settings + 'static>(json: &str) -> Result<(), String> {
    parsed_settings::<S>(json).map(|_| ())
}

/// One `evaluate` call: `request` is the AdmissionRequest JSON without its
/// objects, which come apart as JSON text.
pub fn evaluate<S: Settings + 'static>(
    evaluate: fn(&Request<'_>, &S) -> Result<Verdict, Error>,
    request: &str,
    object: Option<&str>,
    old_object: Option<&str>,
    settings: &str,
    context: Context,
) -> Result<Verdict, String> {
    let settings = parsed_settings::<S>(settings)?;
    let mut request = Request::parse(request, object, old_object).map_err(|err| err.to_string())?;
    request.context = context;
    evaluate(&request, &settings).map_err(|err| err.to_string())
}

fn parsed_settings<S: Settings + 'static>(json: &str) -> Result<Rc<S>, String> {
    SETTINGS.with_borrow_mut(|last| {
        if let Some((text, parsed)) = last
            && text == json
            && let Ok(parsed) = parsed.clone().downcast::<S>()
        {
            return Ok(parsed);
        }
        let parsed = Rc::new(settings::parse::<S>(json).map_err(|err| err.to_string())?);
        *last = Some((json.to_owned(), parsed.clone() as Rc<dyn Any>));
        Ok(parsed)
    })
}
