//! The one path from the wire contract to a plugin's typed code, shared by
//! the component export and the native test harness so both behave alike.

use crate::{Error, Request, Settings, Verdict, settings};

pub fn validate_settings<S: Settings>(json: &str) -> Result<(), String> {
    settings::parse::<S>(json).map(|_| ()).map_err(|err| err.to_string())
}

pub fn evaluate<S: Settings>(
    evaluate: fn(&Request<'_>, &S) -> Result<Verdict, Error>,
    request: &str,
    settings: &str,
) -> Result<Verdict, String> {
    let settings = settings::parse::<S>(settings).map_err(|err| err.to_string())?;
    let request = Request::parse(request).map_err(|err| err.to_string())?;
    evaluate(&request, &settings).map_err(|err| err.to_string())
}
