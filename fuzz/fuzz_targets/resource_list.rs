//! bytes -> the escalation plugin's `resource_list::parse(xml, max)` (first
//! input byte picks max in 0..=15). Must not panic; on success at most max
//! entries, each non-empty, trimmed and at most 512 bytes.
#![no_main]

use escalator_escalation::resource_list;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&m, xml)) = data.split_first() else {
        return;
    };
    let max = usize::from(m % 16);
    if let Ok(uris) = resource_list::parse(xml, max) {
        assert!(uris.len() <= max, "{} entries > max {max}", uris.len());
        for u in &uris {
            assert!(!u.is_empty() && u.len() <= 512, "entry of {} bytes", u.len());
            assert_eq!(u.trim(), u, "entry not trimmed");
        }
    }
});
