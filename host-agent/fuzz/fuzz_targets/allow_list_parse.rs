//! The allow-list file (TOML the host's administrator writes): parsing and validation must
//! never panic, and what parses must encode and parse back to the same rules.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tribune_agent::launch::AllowList;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(list) = AllowList::parse(text, Path::new("fuzz.toml")) {
        let again = AllowList::parse(&list.to_toml(), Path::new("fuzz.toml"))
            .expect("an encoded allow-list parses");
        assert_eq!(list, again);
    }
});
