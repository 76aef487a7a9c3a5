//! Config parsing and validation: any text loads or reports errors, never
//! panics (with an empty environment, so overrides cannot mask the input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::config::{Config, MapEnv};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = MapEnv::default();
    if let Ok(config) = Config::from_toml_str(text, &env) {
        let _ = config.validate();
    }
});
