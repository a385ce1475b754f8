//! The one path from the wire contract to a plugin's typed code, shared by
//! the component export and the native test harness so both behave alike.

use crate::{Context, Error, Request, Settings, Verdict, settings};

pub fn validate_settings<S: Settings>(json: &str) -> Result<(), String> {
    settings::parse::<S>(json).map(|_| ()).map_err(|err| err.to_string())
}

pub fn evaluate<S: Settings>(
    evaluate: fn(&Request<'_>, &S) -> Result<Verdict, Error>,
    request: &str,
    settings: &str,
    context: Context,
) -> Result<Verdict, String> {
    let settings = settings::parse::<S>(settings).map_err(|err| err.to_string())?;
    let mut request = Request::parse(request).map_err(|err| err.to_string())?;
    request.context = context;
    evaluate(&request, &settings).map_err(|err| err.to_string())
}
