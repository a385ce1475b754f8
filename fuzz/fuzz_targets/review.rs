#![no_main]

// Loading the default policy compiles its plugins (seconds, instrumented):
// done before the first input, so that libFuzzer does not time it.
libfuzzer_sys::fuzz_target!(init: { berth_fuzz_checks::default_policies(); }, |data: &[u8]| {
    berth_fuzz_checks::review::check(data);
});
