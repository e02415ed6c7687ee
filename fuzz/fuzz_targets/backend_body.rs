//! Backend answers as the scanner reads them. The first byte picks the shape: even, the rest
//! is a body as it is; odd, the rest is one `"key": value` pair repeated (up to 255 times,
//! the count in the second byte) inside an object, the hostile case of repeated keys. Kept
//! whole or in part, a body is refused exactly when serde_json refuses it (a number out of
//! f64's range or bytes that are not UTF-8 aside, which a skipped field need not decode), and
//! what is kept reads as serde_json reads it (the last of repeated keys wins).
#![no_main]

use facade::backends::json::{Keep, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else { return };
    let body: Vec<u8> = if shape % 2 == 0 {
        rest.to_vec()
    } else {
        let Some((&count, pair)) = rest.split_first() else { return };
        let mut body = b"{".to_vec();
        for i in 0..count {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(pair);
        }
        body.push(b'}');
        body
    };
    let theirs = serde_json::from_slice::<serde_json::Value>(&body);
    let huge = theirs.as_ref().is_err_and(|e| e.to_string().contains("number out of range"));
    // What a partial keep skips is not decoded (as serde_json's `IgnoredAny`): out of f64's
    // range or not UTF-8 there is fine; only the whole keep must refuse what serde_json does.
    let skipped_may_differ = huge || std::str::from_utf8(&body).is_err();
    for keep in [Keep::All, Keep::fields(["a"]), Keep::fields(["a", "b"])] {
        let ours = parse(&body, &keep);
        if skipped_may_differ && keep != Keep::All {
            continue;
        }
        assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "{:?}: ours {:?}, serde_json {:?}",
            String::from_utf8_lossy(&body),
            ours.as_ref().err(),
            theirs.as_ref().err()
        );
        if let (Ok(tape), Ok(value), Keep::All) = (&ours, &theirs, &keep) {
            assert_eq!(&tape.root().to_json(), value, "{:?}", String::from_utf8_lossy(&body));
        }
    }
});
