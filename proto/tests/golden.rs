//! Golden wire bytes, derived by hand from the spec field tables.
//!
//! Notation used in the comments: a tag byte is `(field_number << 3) | wire_type`
//! with wire types 0 = varint, 2 = length-delimited (LEN), 5 = fixed32.
//! Varints are little-endian base-128 groups, continuation bit 0x80.
//! proto3 scalars equal to their default are not emitted; prost encodes
//! fields in field-number order, and (like all proto3 encoders) packs
//! repeated scalars/enums.

use std::collections::HashMap;

use crostini_proto::{cicerone, container, tremplin};
use prost::Message;

fn encode<M: Message>(m: &M) -> Vec<u8> {
    m.encode_to_vec()
}

fn decode<M: Message + Default>(bytes: &[u8]) -> M {
    M::decode(bytes).expect("golden bytes decode")
}

/// Encode `msg`, compare with `golden`, decode `golden` and compare with `msg`.
fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M, golden: &[u8]) {
    assert_eq!(encode(msg), golden, "encoding of {msg:?}");
    assert_eq!(&decode::<M>(golden), msg, "decoding of {golden:02x?}");
}

// ---------------------------------------------------------------- tremplin

#[test]
fn get_container_info_response_fixed32_ipv4() {
    // status RUNNING = 1:   field 1 varint -> tag (1<<3)|0 = 0x08, value 0x01
    // ipv4_address fixed32: field 3 fixed32 -> tag (3<<3)|5 = 0x1d,
    //   100.115.92.2 = u32::from_le_bytes([100,115,92,2]) = 0x025C7364,
    //   written little-endian: 0x64 0x73 0x5c 0x02 (= a b c d on the wire)
    let ip = u32::from_le_bytes([100, 115, 92, 2]);
    assert_eq!(ip, 0x025C_7364);
    let msg = tremplin::GetContainerInfoResponse {
        status: tremplin::get_container_info_response::Status::Running as i32,
        failure_reason: String::new(),
        ipv4_address: ip,
    };
    round_trip(&msg, &[0x08, 0x01, 0x1d, 0x64, 0x73, 0x5c, 0x02]);
}

#[test]
fn container_export_progress_high_field_numbers() {
    // container_name "p":        field 1 LEN   -> 0x0a, len 0x01, 'p' = 0x70
    // status EXPORTING_STREAMING: field 2 varint -> (2<<3)|0 = 0x10, 7
    // progress_percent/speed (3,4) and failure_reason (5) unset -> omitted
    // total_input_files 3:       field 6 varint -> (6<<3)  = 0x30, 0x03
    // total_input_bytes 300:     field 7 varint -> (7<<3)  = 0x38,
    //   300 = 0b10_0101100 -> 0x2c|0x80 = 0xac, 300>>7 = 2 -> 0x02
    // input_files_streamed 1:    field 8 varint -> (8<<3)  = 0x40, 0x01
    // input_bytes_streamed 128:  field 9 varint -> (9<<3)  = 0x48, 128 -> 0x80 0x01
    // bytes_exported 1:          field 10 varint -> (10<<3) = 0x50, 0x01
    let msg = tremplin::ContainerExportProgress {
        container_name: "p".into(),
        status: tremplin::container_export_progress::Status::ExportingStreaming as i32,
        total_input_files: 3,
        total_input_bytes: 300,
        input_files_streamed: 1,
        input_bytes_streamed: 128,
        bytes_exported: 1,
        ..Default::default()
    };
    round_trip(
        &msg,
        &[
            0x0a, 0x01, 0x70, 0x10, 0x07, 0x30, 0x03, 0x38, 0xac, 0x02, 0x40, 0x01, 0x48, 0x80,
            0x01, 0x50, 0x01,
        ],
    );
}

#[test]
fn container_import_progress_failed_space() {
    // status FAILED_SPACE = 6:        field 2 varint -> 0x10, 0x06
    // disk_space_available_bytes 1:  field 8 varint -> (8<<3) = 0x40, 0x01
    // disk_space_required_bytes 2^32: field 9 varint -> (9<<3) = 0x48,
    //   2^32 = bit 32 -> four zero 7-bit groups (0x80 x4) then 2^(32-28) = 0x10
    let msg = tremplin::ContainerImportProgress {
        status: tremplin::container_import_progress::Status::FailedSpace as i32,
        disk_space_available_bytes: 1,
        disk_space_required_bytes: 1 << 32,
        ..Default::default()
    };
    round_trip(
        &msg,
        &[0x10, 0x06, 0x40, 0x01, 0x48, 0x80, 0x80, 0x80, 0x80, 0x10],
    );
}

#[test]
fn start_container_request_all_fields_including_deprecated() {
    // container_name "penguin": field 1 LEN -> 0x0a, 0x07, "penguin"
    // host_public_key "k":      field 2 LEN -> 0x12, 0x01, 'k' = 0x6b
    // container_private_key "":  omitted
    // token "tok":              field 4 LEN -> (4<<3)|2 = 0x22, 0x03, "tok"
    // async true:               field 5 varint -> (5<<3) = 0x28, 0x01
    // privilege_level PRIVILEGED = 2: field 6 varint -> 0x30, 0x02
    // disable_audio_capture true: field 7 varint -> 0x38, 0x01
    let msg = tremplin::StartContainerRequest {
        container_name: "penguin".into(),
        host_public_key: "k".into(),
        container_private_key: String::new(),
        token: "tok".into(),
        r#async: true,
        privilege_level: tremplin::start_container_request::PrivilegeLevel::Privileged as i32,
        disable_audio_capture: true,
    };
    let mut golden = vec![0x0a, 0x07];
    golden.extend_from_slice(b"penguin");
    golden.extend_from_slice(&[0x12, 0x01, 0x6b, 0x22, 0x03]);
    golden.extend_from_slice(b"tok");
    golden.extend_from_slice(&[0x28, 0x01, 0x30, 0x02, 0x38, 0x01]);
    round_trip(&msg, &golden);
}

#[test]
fn start_container_response_nested_os_release() {
    // status RUNNING = 2: 0x08 0x02
    // os_release: field 3 LEN -> (3<<3)|2 = 0x1a, len 12, containing:
    //   version_id "12":  field 4 LEN -> 0x22, 0x02, '1' '2' = 0x31 0x32   (4 bytes)
    //   id "debian":      field 5 LEN -> 0x2a, 0x06, "debian"               (8 bytes)
    let msg = tremplin::StartContainerResponse {
        status: tremplin::start_container_response::Status::Running as i32,
        failure_reason: String::new(),
        os_release: Some(tremplin::OsRelease {
            version_id: "12".into(),
            id: "debian".into(),
            ..Default::default()
        }),
    };
    let mut golden = vec![0x08, 0x02, 0x1a, 0x0c, 0x22, 0x02, 0x31, 0x32, 0x2a, 0x06];
    golden.extend_from_slice(b"debian");
    round_trip(&msg, &golden);
}

#[test]
fn set_timezone_request_repeated_string() {
    // timezone_name "UTC": 0x0a 0x03 'U' 'T' 'C' (0x55 0x54 0x43)
    // posix_tz_string "":  omitted
    // container_names ["a","b"]: field 3 LEN, one record per element
    //   (repeated strings are never packed): 0x1a 0x01 'a', 0x1a 0x01 'b'
    let msg = tremplin::SetTimezoneRequest {
        timezone_name: "UTC".into(),
        posix_tz_string: String::new(),
        container_names: vec!["a".into(), "b".into()],
    };
    round_trip(
        &msg,
        &[
            0x0a, 0x03, 0x55, 0x54, 0x43, 0x1a, 0x01, 0x61, 0x1a, 0x01, 0x62,
        ],
    );
}

#[test]
fn listening_port_info_map_of_messages_with_packed_uint32() {
    // ContainerPortInfo{listening_tcp4_ports: [22, 8080]}:
    //   field 1 packed LEN -> 0x0a, len 3: 22 = 0x16; 8080 = 63*128 + 16 -> 0x90 0x3f
    //   = 0a 03 16 90 3f (5 bytes)
    // map entry {key "penguin", value above}:
    //   key   field 1 LEN -> 0a 07 "penguin"         (9 bytes)
    //   value field 2 LEN -> 12 05 0a 03 16 90 3f    (7 bytes)
    //   entry length 16 = 0x10
    // container_ports: field 1 LEN -> 0x0a 0x10 <entry>
    let mut ports = HashMap::new();
    ports.insert(
        "penguin".to_string(),
        tremplin::listening_port_info::ContainerPortInfo {
            listening_tcp4_ports: vec![22, 8080],
        },
    );
    let msg = tremplin::ListeningPortInfo {
        container_ports: ports,
    };
    let mut golden = vec![0x0a, 0x10, 0x0a, 0x07];
    golden.extend_from_slice(b"penguin");
    golden.extend_from_slice(&[0x12, 0x05, 0x0a, 0x03, 0x16, 0x90, 0x3f]);
    round_trip(&msg, &golden);
}

#[test]
fn update_container_devices_request_map_string_to_enum() {
    // container_name "penguin": 0a 07 "penguin"
    // updates {"microphone": DISABLE = 1}: field 2 LEN -> 0x12, entry:
    //   key   field 1 LEN    -> 0a 0a "microphone"  (12 bytes)
    //   value field 2 varint -> 10 01               (2 bytes)
    //   entry length 14 = 0x0e
    let mut updates = HashMap::new();
    updates.insert(
        "microphone".to_string(),
        tremplin::VmDeviceAction::Disable as i32,
    );
    let msg = tremplin::UpdateContainerDevicesRequest {
        container_name: "penguin".into(),
        updates,
    };
    let mut golden = vec![0x0a, 0x07];
    golden.extend_from_slice(b"penguin");
    golden.extend_from_slice(&[0x12, 0x0e, 0x0a, 0x0a]);
    golden.extend_from_slice(b"microphone");
    golden.extend_from_slice(&[0x10, 0x01]);
    round_trip(&msg, &golden);
}

#[test]
fn update_container_devices_request_default_enum_value_in_map() {
    // {"camera": ENABLE = 0}. prost omits a default value inside a map entry:
    //   entry = 0a 06 "camera" (8 bytes) -> 12 08 <entry>
    // A C++/Go encoder writes the value explicitly (10 00):
    //   entry = 0a 06 "camera" 10 00 (10 bytes) -> 12 0a <entry>
    // Both must decode to ENABLE.
    let mut updates = HashMap::new();
    updates.insert(
        "camera".to_string(),
        tremplin::VmDeviceAction::Enable as i32,
    );
    let msg = tremplin::UpdateContainerDevicesRequest {
        container_name: String::new(),
        updates,
    };
    let mut prost_form = vec![0x12, 0x08, 0x0a, 0x06];
    prost_form.extend_from_slice(b"camera");
    round_trip(&msg, &prost_form);

    let mut cxx_form = vec![0x12, 0x0a, 0x0a, 0x06];
    cxx_form.extend_from_slice(b"camera");
    cxx_form.extend_from_slice(&[0x10, 0x00]);
    assert_eq!(
        decode::<tremplin::UpdateContainerDevicesRequest>(&cxx_form),
        msg
    );
}

#[test]
fn update_container_devices_response_map_of_nested_enum() {
    // status OK = 1: 08 01
    // results {"camera": NO_SUCH_VM_DEVICE = 1}: field 3 LEN -> (3<<3)|2 = 0x1a, entry:
    //   0a 06 "camera" (8 bytes) + 10 01 (2 bytes) -> length 10 = 0x0a
    let mut results = HashMap::new();
    results.insert(
        "camera".to_string(),
        tremplin::update_container_devices_response::UpdateResult::NoSuchVmDevice as i32,
    );
    let msg = tremplin::UpdateContainerDevicesResponse {
        status: tremplin::update_container_devices_response::Status::Ok as i32,
        failure_reason: String::new(),
        results,
    };
    let mut golden = vec![0x08, 0x01, 0x1a, 0x0a, 0x0a, 0x06];
    golden.extend_from_slice(b"camera");
    golden.extend_from_slice(&[0x10, 0x01]);
    round_trip(&msg, &golden);
}

#[test]
fn tremplin_empty_messages_encode_to_nothing() {
    assert!(encode(&tremplin::EmptyMessage {}).is_empty());
    assert!(encode(&tremplin::TremplinStartupInfo {}).is_empty());
    assert!(encode(&tremplin::HostNetworkChangedRequest {}).is_empty());
    assert!(encode(&tremplin::GetDebugInfoRequest {}).is_empty());
    // A response carrying only a zero status is also empty on the wire.
    assert!(encode(&tremplin::CreateContainerResponse::default()).is_empty());
}

// ------------------------------------------------------ container_host.proto

#[test]
fn open_url_request_reversed_field_order() {
    // url "a":   field 1 LEN -> 0x0a, 0x01, 'a' = 0x61
    // token "t": field 2 LEN -> 0x12, 0x01, 't' = 0x74
    let msg = container::OpenUrlRequest {
        url: "a".into(),
        token: "t".into(),
    };
    round_trip(&msg, &[0x0a, 0x01, 0x61, 0x12, 0x01, 0x74]);
}

#[test]
fn container_startup_info() {
    // token "tok":         0a 03 74 6f 6b
    // garcon_port 10000:   field 2 varint -> 0x10; 10000 = 78*128 + 16 -> 0x90 0x4e
    // sftp_port 49152:     field 3 varint -> 0x18; 49152 = 3*128*128 + 0 -> 0x80 0x80 0x03
    let msg = container::ContainerStartupInfo {
        token: "tok".into(),
        garcon_port: 10000,
        sftp_port: 49152,
    };
    round_trip(
        &msg,
        &[
            0x0a, 0x03, 0x74, 0x6f, 0x6b, 0x10, 0x90, 0x4e, 0x18, 0x80, 0x80, 0x03,
        ],
    );
}

#[test]
fn update_mime_types_request_map_string_string() {
    // token "t": 0a 01 74
    // mime_type_mappings {"txt": "text/plain"}: field 2 LEN -> 0x12, entry:
    //   key   0a 03 "txt"          (5 bytes)
    //   value 12 0a "text/plain"   (12 bytes)
    //   entry length 17 = 0x11
    let mut mappings = HashMap::new();
    mappings.insert("txt".to_string(), "text/plain".to_string());
    let msg = container::UpdateMimeTypesRequest {
        token: "t".into(),
        mime_type_mappings: mappings,
    };
    let mut golden = vec![0x0a, 0x01, 0x74, 0x12, 0x11, 0x0a, 0x03];
    golden.extend_from_slice(b"txt");
    golden.extend_from_slice(&[0x12, 0x0a]);
    golden.extend_from_slice(b"text/plain");
    round_trip(&msg, &golden);
}

#[test]
fn application_with_localized_strings() {
    use container::application::{
        locale_strings, localized_string, LocaleStrings, LocalizedString,
    };
    // name = LocalizedString{values: [{locale "", value "A"}, {locale "fr", value "B"}]}
    //   StringWithLocale{"" , "A"}  = 12 01 41                 (3 bytes; locale omitted)
    //   StringWithLocale{"fr", "B"} = 0a 02 66 72 12 01 42     (7 bytes)
    //   LocalizedString = 0a 03 <3> 0a 07 <7>                  (14 bytes = 0x0e)
    // keywords = LocaleStrings{values: [{locale "", value ["x","y"]}]}
    //   StringsWithLocale = 12 01 78 12 01 79                  (6 bytes)
    //   LocaleStrings = 0a 06 <6>                              (8 bytes)
    // Application:
    //   desktop_file_id "a.desktop": 0a 09 "a.desktop"
    //   name:        field 2 LEN   -> 12 0e <14>
    //   no_display:  field 5 varint -> (5<<3) = 0x28, 01
    //   keywords:    field 9 LEN   -> (9<<3)|2 = 0x4a, 08 <8>
    //   terminal:    field 13 varint -> (13<<3) = 104 = 0x68, 01
    let msg = container::Application {
        desktop_file_id: "a.desktop".into(),
        name: Some(LocalizedString {
            values: vec![
                localized_string::StringWithLocale {
                    locale: String::new(),
                    value: "A".into(),
                },
                localized_string::StringWithLocale {
                    locale: "fr".into(),
                    value: "B".into(),
                },
            ],
        }),
        no_display: true,
        keywords: Some(LocaleStrings {
            values: vec![locale_strings::StringsWithLocale {
                locale: String::new(),
                value: vec!["x".into(), "y".into()],
            }],
        }),
        terminal: true,
        ..Default::default()
    };
    let mut golden = vec![0x0a, 0x09];
    golden.extend_from_slice(b"a.desktop");
    golden.extend_from_slice(&[
        0x12, 0x0e, // name
        0x0a, 0x03, 0x12, 0x01, 0x41, // {"" , "A"}
        0x0a, 0x07, 0x0a, 0x02, 0x66, 0x72, 0x12, 0x01, 0x42, // {"fr", "B"}
        0x28, 0x01, // no_display
        0x4a, 0x08, 0x0a, 0x06, 0x12, 0x01, 0x78, 0x12, 0x01, 0x79, // keywords
        0x68, 0x01, // terminal
    ]);
    round_trip(&msg, &golden);

    // Wrapped in UpdateApplicationListRequest{token "t", application [msg, {}]}:
    //   0a 01 74, then 12 <len> <msg> per element; an empty Application is 12 00.
    let list = container::UpdateApplicationListRequest {
        token: "t".into(),
        application: vec![msg, container::Application::default()],
    };
    let mut golden_list = vec![
        0x0a,
        0x01,
        0x74,
        0x12,
        u8::try_from(golden.len()).expect("short"),
    ];
    golden_list.extend_from_slice(&golden);
    golden_list.extend_from_slice(&[0x12, 0x00]);
    round_trip(&list, &golden_list);
}

#[test]
fn install_linux_package_progress_info_status_values() {
    use container::install_linux_package_progress_info::Status;
    // token "t": 0a 01 74; status INSTALLING = 3: field 2 -> 0x10 0x03;
    // progress_percent 50: field 3 -> 0x18 0x32; failure_details "" omitted;
    // command_uuid "u": field 5 LEN -> (5<<3)|2 = 0x2a 0x01 0x75
    let msg = container::InstallLinuxPackageProgressInfo {
        token: "t".into(),
        status: Status::Installing as i32,
        progress_percent: 50,
        failure_details: String::new(),
        command_uuid: "u".into(),
    };
    round_trip(
        &msg,
        &[0x0a, 0x01, 0x74, 0x10, 0x03, 0x18, 0x32, 0x2a, 0x01, 0x75],
    );
    // DOWNLOADING = 2 -> 0x10 0x02; FAILED = 1 -> 0x10 0x01
    for (status, byte) in [(Status::Downloading, 0x02), (Status::Failed, 0x01)] {
        let m = container::InstallLinuxPackageProgressInfo {
            status: status as i32,
            ..Default::default()
        };
        round_trip(&m, &[0x10, byte]);
    }
    // SUCCEEDED = 0 is the proto3 default: not emitted, and empty bytes decode as SUCCEEDED.
    let ok = container::InstallLinuxPackageProgressInfo {
        token: "t".into(),
        status: Status::Succeeded as i32,
        ..Default::default()
    };
    round_trip(&ok, &[0x0a, 0x01, 0x74]);
    assert_eq!(
        decode::<container::InstallLinuxPackageProgressInfo>(&[]).status(),
        Status::Succeeded
    );
}

#[test]
fn inhibit_screensaver_negative_int32_cookie() {
    // cookie is int32; a D-Bus u32 cookie 0xFFFF_FFFF cast to i32 is -1, and a
    // negative int32 is sign-extended to 64 bits: 10-byte varint ff x9 01.
    // token "t": 0a 01 74; cookie: field 2 varint -> 0x10 <10 bytes>
    let cookie = 0xFFFF_FFFFu32 as i32;
    let msg = container::InhibitScreensaverInfo {
        token: "t".into(),
        cookie,
        ..Default::default()
    };
    round_trip(
        &msg,
        &[
            0x0a, 0x01, 0x74, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
    );
}

#[test]
fn low_disk_space_triggered_uint64() {
    // free_bytes 2^32: field 2 varint -> 0x10, 80 80 80 80 10
    let msg = container::LowDiskSpaceTriggeredInfo {
        token: "t".into(),
        free_bytes: 1 << 32,
    };
    round_trip(
        &msg,
        &[0x0a, 0x01, 0x74, 0x10, 0x80, 0x80, 0x80, 0x80, 0x10],
    );
}

// ----------------------------------------------------- container_guest.proto

#[test]
fn launch_application_request_packed_enums() {
    use container::{launch_application_request::DisplayScaling, ContainerFeature};
    // desktop_file_id "x":  0a 01 78
    // files ["/a"]:         field 2 LEN -> 12 02 2f 61
    // display_scaling SCALED = 1: field 3 varint -> 18 01
    // container_features [GTK3 = 1, QT = 3]: field 4 packed LEN -> (4<<3)|2 = 0x22, 02, 01 03
    let msg = container::LaunchApplicationRequest {
        desktop_file_id: "x".into(),
        files: vec!["/a".into()],
        display_scaling: DisplayScaling::Scaled as i32,
        container_features: vec![
            ContainerFeature::EnableGtk3ImeSupport as i32,
            ContainerFeature::EnableQtImeSupport as i32,
        ],
    };
    round_trip(
        &msg,
        &[
            0x0a, 0x01, 0x78, 0x12, 0x02, 0x2f, 0x61, 0x18, 0x01, 0x22, 0x02, 0x01, 0x03,
        ],
    );
    // Parsers must also accept the unpacked form: (4<<3)|0 = 0x20 per element.
    let unpacked = [
        0x0a, 0x01, 0x78, 0x12, 0x02, 0x2f, 0x61, 0x18, 0x01, 0x20, 0x01, 0x20, 0x03,
    ];
    assert_eq!(
        decode::<container::LaunchApplicationRequest>(&unpacked),
        msg
    );
    // Unknown feature numbers survive as raw i32 (must be ignored, not rejected).
    let unknown = decode::<container::LaunchVshdRequest>(&[0x08, 0x01, 0x12, 0x01, 0x63]);
    // port 1: 08 01; container_features [99]: field 2 packed -> 12 01 63
    assert_eq!(unknown.port, 1);
    assert_eq!(unknown.container_features, vec![99]);
}

#[test]
fn install_linux_package_request_sparse_numbers() {
    // file_path "f": 0a 01 66; numbers 2-4 unused;
    // package_id "p": field 5 LEN -> 0x2a 01 70; command_uuid "c": field 6 LEN -> 0x32 01 63
    let msg = container::InstallLinuxPackageRequest {
        file_path: "f".into(),
        package_id: "p".into(),
        command_uuid: "c".into(),
    };
    round_trip(
        &msg,
        &[0x0a, 0x01, 0x66, 0x2a, 0x01, 0x70, 0x32, 0x01, 0x63],
    );
}

#[test]
fn get_garcon_session_info_response() {
    // status SUCCEEDED = 2:    08 02
    // container_username "u":  field 3 LEN -> 1a 01 75
    // container_homedir "/home/u": field 4 LEN -> 22 07 "/home/u"
    // sftp_vsock_port 1234:    field 5 varint -> 0x28; 1234 = 9*128 + 82 -> 0xd2 0x09
    let msg = container::GetGarconSessionInfoResponse {
        status: container::get_garcon_session_info_response::Status::Succeeded as i32,
        failure_reason: String::new(),
        container_username: "u".into(),
        container_homedir: "/home/u".into(),
        sftp_vsock_port: 1234,
    };
    let mut golden = vec![0x08, 0x02, 0x1a, 0x01, 0x75, 0x22, 0x07];
    golden.extend_from_slice(b"/home/u");
    golden.extend_from_slice(&[0x28, 0xd2, 0x09]);
    round_trip(&msg, &golden);
}

#[test]
fn desktop_icon_bytes_and_format() {
    // IconResponse{desktop_icons: [DesktopIcon{id "d", icon [0x89, 0x50], format SVG = 1}]}
    //   DesktopIcon = 0a 01 64 | 12 02 89 50 | 18 01       (9 bytes)
    //   IconResponse = 0a 09 <9>
    let msg = container::IconResponse {
        desktop_icons: vec![container::DesktopIcon {
            desktop_file_id: "d".into(),
            icon: vec![0x89, 0x50],
            format: container::desktop_icon::Format::Svg as i32,
        }],
    };
    round_trip(
        &msg,
        &[
            0x0a, 0x09, 0x0a, 0x01, 0x64, 0x12, 0x02, 0x89, 0x50, 0x18, 0x01,
        ],
    );
}

#[test]
fn install_linux_package_response_default_decodes_as_started() {
    // STARTED = 0: an empty reply means STARTED (spec pitfall).
    let r = decode::<container::InstallLinuxPackageResponse>(&[]);
    assert_eq!(
        r.status(),
        container::install_linux_package_response::Status::Started
    );
    // FAILED = 1 with reason "x": 08 01 12 01 78
    let failed = container::InstallLinuxPackageResponse {
        status: container::install_linux_package_response::Status::Failed as i32,
        failure_reason: "x".into(),
    };
    round_trip(&failed, &[0x08, 0x01, 0x12, 0x01, 0x78]);
}

// ------------------------------------------------------------- vm_crash.proto

#[test]
fn failure_report() {
    // failed_process "garcon": field 1 LEN -> 0a 06 "garcon"
    let msg = cicerone::FailureReport {
        failed_process: "garcon".into(),
    };
    let mut golden = vec![0x0a, 0x06];
    golden.extend_from_slice(b"garcon");
    round_trip(&msg, &golden);
    assert!(encode(&crostini_proto::EmptyMessage {}).is_empty());
}
