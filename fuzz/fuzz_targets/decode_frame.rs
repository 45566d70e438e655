//! Store-channel frames from an untrusted peer: decoding never panics, never allocates past
//! the frame cap, and whatever decodes re-encodes to a frame that decodes to the same value.

#![no_main]

use ekms_shared::wire::v1::{decode_frame, encode_frame, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode_frame::<Request>(data) {
        let frame = encode_frame(&request).expect("a decoded request is no larger re-encoded");
        let again = decode_frame::<Request>(&frame).expect("an encoded request decodes");
        assert_eq!(again, request);
    }
    if let Ok(response) = decode_frame::<Response>(data) {
        let frame = encode_frame(&response).expect("a decoded response is no larger re-encoded");
        let again = decode_frame::<Response>(&frame).expect("an encoded response decodes");
        assert_eq!(again, response);
    }
});
