//! Property tests of the codec: every message type survives a round trip, and no input makes
//! decoding panic.

use mcdnn_wire::codec::{self, MAGIC};
use mcdnn_wire::msg::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

// Finite floats only: NaN != NaN would fail the equality check, not the codec.
fn f64s() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        -1e12f64..1e12,
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE)
    ]
}

fn f32s() -> impl Strategy<Value = f32> {
    prop_oneof![Just(0.0f32), -1e6f32..1e6]
}

fn text() -> impl Strategy<Value = String> {
    ".{0,16}"
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    vec(text(), 0..4)
}

fn place() -> impl Strategy<Value = PlaceTag> {
    prop_oneof![Just(PlaceTag::Device), Just(PlaceTag::Server)]
}

prop_compose! {
    fn battery()(
        capacity_j in f64s(), energy_left_j in f64s(), drain_w in f64s(),
        shift_end_unix_ms in any::<u64>(), sysfs in any::<bool>(),
    ) -> Battery {
        let source = if sysfs { BatterySource::Sysfs } else { BatterySource::Model };
        Battery { capacity_j, energy_left_j, drain_w, shift_end_unix_ms, source }
    }
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Device),
        f64s().prop_map(|capacity_rps| Role::Server { capacity_rps }),
    ]
}

prop_compose! {
    fn hello()(
        node_id in text(), device_class in text(), role in role(),
        protocol_version in any::<u16>(), catalog_digests in texts(),
        offload_addr in option::of(text()), battery in battery(), apps in texts(),
        watchlist_version in any::<u64>(),
    ) -> Hello {
        Hello { node_id, device_class, role, protocol_version, catalog_digests, offload_addr,
                battery, apps, watchlist_version }
    }
}

prop_compose! {
    fn app_telemetry()(
        app in text(), rate_per_s in f64s(), class_histogram in vec(any::<u32>(), 0..12),
        counts in any::<[u64; 5]>(), latency_ms_p50 in f64s(), energy_used_j in f64s(),
        cost_used_usd in f64s(),
    ) -> AppTelemetry {
        let [requests, correct, labelled, dropped, offloaded] = counts;
        AppTelemetry { app, rate_per_s, class_histogram, requests, correct, labelled, dropped, offloaded,
                       latency_ms_p50, energy_used_j, cost_used_usd }
    }
}

prop_compose! {
    fn telemetry()(
        seq in any::<u64>(), at_unix_ms in any::<u64>(), battery in battery(),
        memory_free_bytes in any::<u64>(), model_memory_budget_bytes in any::<u64>(),
        loaded_variants in texts(), apps in vec(app_telemetry(), 0..3),
        rtt_ms in f64s(), bandwidth_bps in f64s(), connected in any::<bool>(),
        offload_queue in any::<u32>(), served_offload in any::<u64>(),
        load_profiles in vec(load_profile(), 0..3), spool in any::<[u64; 2]>(),
    ) -> Telemetry {
        Telemetry { seq, at_unix_ms, battery, memory_free_bytes, model_memory_budget_bytes,
                    loaded_variants, apps, link: Link { rtt_ms, bandwidth_bps, connected },
                    offload_queue, served_offload, load_profiles,
                    spool: SpoolCounters { accepted: spool[0], failures: spool[1] } }
    }
}

prop_compose! {
    fn load_profile()(
        variant in text(), load_ms in f64s(), load_j in f64s(), loads in any::<u64>(),
    ) -> LoadProfile {
        LoadProfile { variant, load_ms, load_j, loads }
    }
}

prop_compose! {
    fn inference_result()(
        seq in any::<u64>(), app in text(), at_unix_ms in any::<u64>(), label in any::<u32>(),
        truth in option::of(any::<u32>()), score in f32s(), variant in text(), place in place(),
        energy_j in f64s(), cost_usd in f64s(), latency_ms in f64s(),
    ) -> InferenceResult {
        InferenceResult { seq, app, at_unix_ms, label, truth, score, variant, place, energy_j,
                          cost_usd, latency_ms }
    }
}

fn node_msg() -> impl Strategy<Value = NodeMsg> {
    prop_oneof![
        hello().prop_map(NodeMsg::Hello),
        telemetry().prop_map(NodeMsg::Telemetry),
        any::<u64>().prop_map(|epoch| NodeMsg::Ack { epoch }),
        (any::<u64>(), any::<u64>(), vec(inference_result(), 0..4)).prop_map(
            |(incarnation, first_seq, results)| NodeMsg::Results(ResultBatch {
                incarnation,
                first_seq,
                results
            })
        ),
        Just(NodeMsg::Bye),
    ]
}

prop_compose! {
    fn app_assignment()(
        app in text(),
        mix in vec((text(), place(), 0.0f64..=1.0)
            .prop_map(|(variant, place, fraction)| MixEntry { variant, place, fraction }), 0..4),
        allowed_variants in texts(), offload_target in option::of(text()),
        offload_server in option::of(text()),
        energy_budget_j_per_request in f64s(), cost_budget_usd_per_request in f64s(),
        specialised in option::of((text(), text(), text(), vec(any::<u32>(), 0..8), f64s())
            .prop_map(|(variant, trunk_variant, head_sha256, classes, accuracy)| SpecialisedRun {
                variant, trunk_variant, head_sha256, classes, accuracy })),
    ) -> AppAssignment {
        AppAssignment { app, mix, allowed_variants, offload_target, offload_server,
                        energy_budget_j_per_request, cost_budget_usd_per_request, specialised }
    }
}

prop_compose! {
    fn assignment()(
        epoch in any::<u64>(), node_id in text(), issued_unix_ms in any::<u64>(),
        apps in vec(app_assignment(), 0..3), energy_price in f64s(), cost_price in f64s(),
        plan_gap in f64s(),
    ) -> Assignment {
        Assignment { epoch, node_id, issued_unix_ms, apps, energy_price, cost_price, plan_gap }
    }
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::VersionMismatch),
        Just(ErrorCode::IdentityMismatch),
        Just(ErrorCode::Forbidden),
        Just(ErrorCode::BadSequence),
        Just(ErrorCode::CatalogMismatch),
        Just(ErrorCode::Unavailable),
        Just(ErrorCode::Internal),
    ]
}

fn coord_msg() -> impl Strategy<Value = CoordMsg> {
    prop_oneof![
        (text(), text(), any::<u64>()).prop_map(|(node_id, leader, epoch)| CoordMsg::Welcome {
            node_id,
            leader,
            epoch
        }),
        assignment().prop_map(CoordMsg::Assignment),
        text().prop_map(|leader_addr| CoordMsg::Redirect { leader_addr }),
        (any::<u64>(), any::<u64>()).prop_map(|(incarnation, up_to_seq)| CoordMsg::ResultsAck {
            incarnation,
            up_to_seq
        }),
        (error_code(), text()).prop_map(|(code, message)| CoordMsg::Error { code, message }),
        Just(CoordMsg::Heartbeat),
        any::<u32>().prop_map(|ping_interval_ms| CoordMsg::Liveness { ping_interval_ms }),
    ]
}

prop_compose! {
    fn offload_request()(
        id in any::<u64>(), app in text(), variant in text(), pixels in vec(any::<u8>(), 0..64),
        height in any::<u16>(), width in any::<u16>(),
    ) -> OffloadRequest {
        OffloadRequest { id, app, variant, pixels, height, width }
    }
}

fn offload_reply() -> impl Strategy<Value = OffloadReply> {
    (
        any::<u64>(),
        prop_oneof![
            (any::<u32>(), f32s(), f64s()).prop_map(Ok),
            text().prop_map(Err),
        ],
    )
        .prop_map(|(id, result)| OffloadReply { id, result })
}

fn round_trip<T>(msg: &T) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let payload = codec::encode(msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: T = codec::decode(&payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, msg);
    Ok(())
}

/// Decodes as every message type; the property is only that nothing panics.
fn decode_all(bytes: &[u8]) {
    let _ = codec::decode::<NodeMsg>(bytes);
    let _ = codec::decode::<CoordMsg>(bytes);
    let _ = codec::decode::<OffloadRequest>(bytes);
    let _ = codec::decode::<OffloadReply>(bytes);
}

proptest! {
    #[test]
    fn node_msgs_round_trip(msg in node_msg()) { round_trip(&msg)?; }

    #[test]
    fn coord_msgs_round_trip(msg in coord_msg()) { round_trip(&msg)?; }

    #[test]
    fn offload_requests_round_trip(msg in offload_request()) { round_trip(&msg)?; }

    #[test]
    fn offload_replies_round_trip(msg in offload_reply()) { round_trip(&msg)?; }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        decode_all(&bytes);
    }

    /// Random bodies behind a valid header reach bincode instead of stopping at the header check.
    #[test]
    fn random_bodies_never_panic(body in vec(any::<u8>(), 0..256)) {
        let mut payload = MAGIC.to_vec();
        payload.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        payload.extend_from_slice(&body);
        decode_all(&payload);
    }

    /// Corrupting one byte of a valid message never panics either.
    #[test]
    fn mutated_messages_never_panic(msg in node_msg(), at in any::<prop::sample::Index>(), b in any::<u8>()) {
        let mut payload = codec::encode(&msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let i = at.index(payload.len());
        payload[i] = b;
        decode_all(&payload);
    }
}
