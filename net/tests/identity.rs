//! Fleet CA files and enrolment rules.

use mcdnn_net::identity::{Ca, Identity, IdentityError, Kind, PeerId};

#[test]
fn ca_init_refuses_to_overwrite_and_keys_are_private() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ca");
    Ca::init(&dir).expect("init");
    let err = Ca::init(&dir).expect_err("second init");
    assert!(matches!(err, IdentityError::CaExists { .. }), "{err}");
    assert!(err.to_string().contains("refusing to overwrite"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("ca.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn enrolment_writes_identity_sans_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&tmp.path().join("ca")).expect("init");
    let out = tmp.path().join("out");
    let sans = [
        "coord-0.coord.mcdnn-system.svc".to_owned(),
        "10.0.0.7".to_owned(),
    ];
    let e = ca
        .enroll(Kind::Coordinator, "coord-0", &out, &sans, 365)
        .expect("enroll");
    assert_eq!(
        e.peer,
        PeerId::new(Kind::Coordinator, "coord-0").expect("id")
    );
    assert_eq!(
        e.sans,
        [
            "coord-0.coordinator.mcdnn",
            "localhost",
            "127.0.0.1",
            "coord-0.coord.mcdnn-system.svc",
            "10.0.0.7"
        ]
    );
    for f in ["coord-0.key", "coord-0.pem", "ca.pem"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let id = Identity::load(&out, "coord-0").expect("load");
    assert_eq!(id.peer(), &e.peer);

    // A node enrolled into the same directory shares the identical ca.pem.
    ca.enroll(Kind::Node, "cam-1", &out, &[], 30)
        .expect("second identity");
    let err = ca
        .enroll(Kind::Node, "cam-1", &out, &[], 30)
        .expect_err("overwrite");
    assert!(matches!(err, IdentityError::FileExists { .. }), "{err}");

    // A directory holding another CA's ca.pem is refused.
    let other = Ca::init(&tmp.path().join("other")).expect("other CA");
    let err = other
        .enroll(Kind::Node, "cam-2", &out, &[], 30)
        .expect_err("mixed CAs");
    assert!(matches!(err, IdentityError::CaMismatch { .. }), "{err}");
}

#[test]
fn bad_names_sans_and_validity_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&tmp.path().join("ca")).expect("init");
    let out = tmp.path().join("out");
    for name in ["Cam1", "cam_1", "", "ca", "-x"] {
        let err = ca.enroll(Kind::Node, name, &out, &[], 30).expect_err(name);
        assert!(
            matches!(err, IdentityError::InvalidName { .. }),
            "{name}: {err}"
        );
    }
    for san in ["evil.node.mcdnn", "bad host", ""] {
        let err = ca
            .enroll(Kind::Node, "cam-1", &out, &[san.to_owned()], 30)
            .expect_err(san);
        assert!(
            matches!(err, IdentityError::InvalidSan { .. }),
            "{san}: {err}"
        );
    }
    for days in [0, u32::MAX] {
        let err = ca
            .enroll(Kind::Node, "cam-1", &out, &[], days)
            .expect_err("days");
        assert!(
            matches!(err, IdentityError::InvalidValidity { .. }),
            "{err}"
        );
    }
    // Nothing was written by the refused attempts.
    assert!(!out.join("cam-1.key").exists());
}

#[test]
fn load_checks_files_and_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&tmp.path().join("ca")).expect("init");
    let out = tmp.path().join("out");
    ca.enroll(Kind::Operator, "alice", &out, &[], 30)
        .expect("enroll");
    std::fs::copy(out.join("alice.pem"), out.join("bob.pem")).expect("copy");
    std::fs::copy(out.join("alice.key"), out.join("bob.key")).expect("copy");
    let err = Identity::load(&out, "bob").expect_err("name mismatch");
    assert!(matches!(err, IdentityError::NameMismatch { .. }), "{err}");
    let err = Identity::load(&out, "carol").expect_err("missing");
    assert!(matches!(err, IdentityError::Read { .. }), "{err}");
    assert!(err.to_string().contains("carol.pem"), "{err}");

    std::fs::write(out.join("bob.pem"), "garbage").expect("write");
    let err = Identity::load(&out, "bob").expect_err("garbage");
    assert!(err.to_string().contains("bob.pem"), "{err}");

    // A CA whose key does not match its certificate is refused on load.
    let other = tmp.path().join("other");
    Ca::init(&other).expect("other");
    std::fs::copy(tmp.path().join("ca/ca.key"), other.join("ca.key.tmp")).expect("copy");
    std::fs::rename(other.join("ca.key.tmp"), other.join("ca.key")).expect("swap");
    let err = Ca::load(&other).expect_err("mismatch");
    assert!(matches!(err, IdentityError::KeyMismatch { .. }), "{err}");
}
