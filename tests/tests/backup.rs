//! Backup and restore across real processes: `mcdnnctl snapshot save` under writes, `restore`
//! into a new cluster, every write acknowledged before the save on every replica, once.

#[test]
fn snapshot_save_under_writes_restores_into_a_new_cluster() {
    let v = mcdnn_tests::backup_chaos::snapshot_restore(30).expect("scenario runs");
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["lost"], 0, "{v:#}");
    assert_eq!(v["duplicated"], 0, "{v:#}");
}
