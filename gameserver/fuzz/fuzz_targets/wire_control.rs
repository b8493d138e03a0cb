//! The control stream: length-prefixed frames, each a client or server control message.
//!
//! - `control_frame_len` never claims more bytes than are buffered, reads the length from the
//!   prefix, and refuses exactly the lengths over `MAX_CONTROL`;
//! - the input read as a stream of frames, the way the server reads it, decodes frame by frame
//!   without panicking;
//! - a message either decoder accepts survives `decode(encode(m)) == m`; client messages
//!   re-encode to the same bytes (server `Welcome` reads any non-zero byte as `resumed`, so
//!   server messages re-encode to the same length only).
#![no_main]

use flotilla_game::wire::{self, ClientControl, MAX_CONTROL, ServerControl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_messages(data);

    let mut buffered = data;
    loop {
        let result = wire::control_frame_len(buffered);
        let announced = buffered
            .get(..2)
            .map(|prefix| usize::from(u16::from_le_bytes([prefix[0], prefix[1]])));
        match (result, announced) {
            (Ok(None), None) => break,
            (Ok(None), Some(len)) => {
                assert!(len <= MAX_CONTROL, "a {len}-byte frame was not refused");
                assert!(
                    buffered.len() < 2 + len,
                    "a whole frame is buffered but not returned"
                );
                break;
            }
            (Ok(Some(len)), Some(prefix)) => {
                assert_eq!(len, prefix, "frame length is not the prefix");
                assert!(len <= MAX_CONTROL, "a {len}-byte frame was accepted");
                assert!(
                    2 + len <= buffered.len(),
                    "claimed {len} bytes with {} buffered",
                    buffered.len()
                );
                check_messages(&buffered[2..2 + len]);
                buffered = &buffered[2 + len..];
            }
            (Err(_), Some(len)) => {
                assert!(len > MAX_CONTROL, "a {len}-byte frame was refused");
                break;
            }
            (result, None) => panic!("{result:?} with fewer than 2 bytes buffered"),
        }
    }
});

fn check_messages(bytes: &[u8]) {
    if let Ok(message) = ClientControl::decode(bytes) {
        let encoded = message.encode();
        assert_eq!(encoded, bytes, "re-encoding {message:?} gives other bytes");
        assert_eq!(ClientControl::decode(&encoded), Ok(message));
    }
    if let Ok(message) = ServerControl::decode(bytes) {
        let encoded = message.encode();
        assert_eq!(
            encoded.len(),
            bytes.len(),
            "re-encoding {message:?} changes its length"
        );
        assert_eq!(ServerControl::decode(&encoded), Ok(message));
    }
}
