//! Feeds arbitrary bytes to the payload decoder as every message type a peer can send.
//! Decoding must return an error for garbage, never panic, hang or allocate unboundedly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::codec;
use wire::msg::{CoordMsg, NodeMsg, OffloadReply, OffloadRequest};

fuzz_target!(|data: &[u8]| {
    // Once with the raw input (exercises the header checks), once behind a valid header so the
    // fuzzer spends its time inside the message decoder.
    let mut framed = Vec::with_capacity(codec::HEADER_BYTES + data.len());
    framed.extend_from_slice(&codec::MAGIC);
    framed.extend_from_slice(&wire::msg::PROTOCOL_VERSION.to_be_bytes());
    framed.extend_from_slice(data);
    for input in [data, framed.as_slice()] {
        let _ = codec::decode::<NodeMsg>(input);
        let _ = codec::decode::<CoordMsg>(input);
        let _ = codec::decode::<OffloadRequest>(input);
        let _ = codec::decode::<OffloadReply>(input);
    }
});
