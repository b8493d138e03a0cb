//! A running match fed arbitrary control messages, datagrams, joins, inputs, disconnects,
//! reallocations and failovers, ticking between them (input format and checks:
//! `flotilla_fuzz::session`). The game never panics; every datagram it sends fits
//! `MAX_DATAGRAM` and decodes, and the clients rebuild exactly the server's state from them;
//! every control message it sends reaches the client whole.
#![no_main]

use flotilla_fuzz::session::Harness;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    Harness::new().run(data);
});
