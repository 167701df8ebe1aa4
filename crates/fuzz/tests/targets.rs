//! The CI run of every fuzz target: its seed corpus, then mutated inputs from a fixed seed.
//! Longer runs: `cargo run --release -p parley-fuzz -- TARGET --seconds 300`.

/// Iterations per protobuf target (microseconds each).
const PROTO: u64 = 20_000;
/// Iterations per target that runs openmls (signature checks: up to milliseconds each).
const MLS: u64 = 1_500;

macro_rules! fuzz_tests {
    ($($name:ident: $iterations:expr;)*) => {
        $(
            #[test]
            fn $name() {
                parley_fuzz::check(stringify!($name), $iterations);
            }
        )*

        #[test]
        fn every_target_has_a_test() {
            let tested = [$(stringify!($name)),*];
            for target in parley_fuzz::targets() {
                assert!(tested.contains(&target.name), "no test for target {}", target.name);
            }
        }
    };
}

fuzz_tests! {
    proto_error_body: PROTO;
    proto_register_request: PROTO;
    proto_register_response: PROTO;
    proto_challenge_request: PROTO;
    proto_challenge_response: PROTO;
    proto_login_request: PROTO;
    proto_login_response: PROTO;
    proto_user_devices: PROTO;
    proto_device_info: PROTO;
    proto_upload_key_packages: PROTO;
    proto_key_package_count: PROTO;
    proto_claim_key_packages: PROTO;
    proto_claimed_key_package: PROTO;
    proto_claim_response: PROTO;
    proto_create_group: PROTO;
    proto_create_group_response: PROTO;
    proto_submit: PROTO;
    proto_submit_response: PROTO;
    proto_franking_context: PROTO;
    proto_queue_item: PROTO;
    proto_welcome_bundle: PROTO;
    proto_queue_batch: PROTO;
    proto_ack: PROTO;
    proto_server_frame: PROTO;
    proto_client_frame: PROTO;
    proto_live_submit: PROTO;
    proto_start_push: PROTO;
    proto_live_result: PROTO;
    proto_reported_message: PROTO;
    proto_report_request: PROTO;
    proto_report_response: PROTO;
    proto_server_info: PROTO;
    proto_app_payload: PROTO;
    proto_text_body: PROTO;
    proto_group_meta: PROTO;
    proto_message_aad: PROTO;
    proto_group_roles: PROTO;
    proto_group_info_upload: PROTO;
    proto_group_info_bundle: PROTO;
    proto_register_backup: PROTO;
    proto_backup_info: PROTO;
    proto_backup_list: PROTO;
    proto_account_backup: PROTO;
    decode_bounded: PROTO;
    mls_submission: MLS;
    create_group: MLS;
    key_package: MLS;
    public_state: MLS;
    live_frame: MLS;
    welcome_bundle: MLS;
    ids_and_names: PROTO;
    evidence_bundle: PROTO;
    config_file: PROTO;
    server_key_file: PROTO;
}

/// Inputs that once crashed a target (`regressions/<target>-<what>`), kept as tests.
#[test]
fn regressions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("regressions/") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let target = parley_fuzz::targets()
            .iter()
            .find(|t| name.starts_with(&format!("{}-", t.name)))
            .unwrap_or_else(|| panic!("{name} names no target"));
        let input = std::fs::read(&path).unwrap();
        if let Err(crash) = parley_fuzz::run_one(target, &input) {
            panic!("{name}: {crash}");
        }
        count += 1;
    }
    assert!(count > 0);
}

/// The first finding: a stored group state whose openmls value is not the JSON openmls wrote
/// made `PublicGroupState::load` panic inside openmls' memory storage; now it is `Corrupt`.
#[test]
fn corrupt_public_state_is_an_error() {
    let input = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("regressions/public_state-corrupt-value"),
    )
    .unwrap();
    let storage = parley_server::public_state::decode_storage(&input).unwrap();
    drop(storage);
    let id = openmls::prelude::GroupId::from_slice(&parley_fuzz::seeds::GROUP_ID);
    assert!(parley_server::public_state::PublicGroupState::load(&id, &input).is_err());
}
