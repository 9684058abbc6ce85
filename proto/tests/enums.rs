//! Every enum of the spec tables (tremplin.md §2.4, garcon-service.md §2.3
//! and §2.4, garcon-host.md §2.3): value names and numbers, checked both on
//! the generated Rust types and (exhaustively, catching extra or missing
//! values/enums) on the compiled descriptor set.

use std::collections::BTreeMap;

use crostini_proto::{container, tremplin, FILE_DESCRIPTOR_SET};
use prost::Message as _;
use prost_types::{DescriptorProto, FileDescriptorSet};

type EnumTable = BTreeMap<String, Vec<(String, i32)>>;

/// `"proto.full.Name" => rust::Path { "PROTO_VALUE" => RustVariant = n, ... }`
macro_rules! enum_table {
    ($( $full:literal => $ty:path { $( $name:literal => $variant:ident = $num:literal ),* $(,)? } )*) => {{
        let mut table = EnumTable::new();
        $(
            {
                type E = $ty;
                $(
                    assert_eq!(E::$variant as i32, $num, "{}.{}", $full, $name);
                    assert_eq!(E::$variant.as_str_name(), $name, "{}", $full);
                    assert_eq!(E::from_str_name($name), Some(E::$variant), "{}", $full);
                    assert_eq!(E::try_from($num).ok(), Some(E::$variant), "{}", $full);
                )*
                let prev = table.insert(
                    $full.to_string(),
                    vec![$(($name.to_string(), $num)),*],
                );
                assert!(prev.is_none(), "duplicate enum {} in test table", $full);
            }
        )*
        table
    }};
}

fn expected_enums() -> EnumTable {
    use container::{
        add_file_watch_response, apply_ansible_playbook_progress_info,
        apply_ansible_playbook_response, configure_for_arc_sideload_response, desktop_icon,
        get_garcon_session_info_response, install_linux_package_progress_info,
        install_linux_package_response, launch_application_request, remove_file_watch_response,
        uninstall_package_owning_file_response, uninstall_package_progress_info,
    };
    use tremplin::{
        attach_usb_to_container_response, cancel_export_container_response,
        cancel_import_container_response, container_creation_progress, container_deletion_progress,
        container_export_progress, container_import_progress, container_start_progress,
        container_stop_progress, create_container_response, delete_container_response,
        detach_usb_from_container_response, export_container_response, get_container_info_response,
        get_container_username_response, import_container_response, set_up_user_response,
        start_container_request, start_container_response, start_lxd_progress, start_lxd_response,
        stop_container_response, update_container_devices_response,
    };

    enum_table! {
        // ---- tremplin.md §2.4 ----
        "vm_tools.tremplin.StartLxdResponse.Status" => start_lxd_response::Status {
            "UNKNOWN" => Unknown = 0, "STARTING" => Starting = 1,
            "ALREADY_RUNNING" => AlreadyRunning = 2, "FAILED" => Failed = 3,
        }
        "vm_tools.tremplin.StartLxdProgress.Status" => start_lxd_progress::Status {
            "UNKNOWN" => Unknown = 0, "STARTING" => Starting = 1, "RECOVERING" => Recovering = 2,
            "STARTED" => Started = 3, "FAILED" => Failed = 4,
        }
        "vm_tools.tremplin.CreateContainerResponse.Status" => create_container_response::Status {
            "UNKNOWN" => Unknown = 0, "CREATING" => Creating = 1, "EXISTS" => Exists = 2,
            "FAILED" => Failed = 3,
        }
        "vm_tools.tremplin.DeleteContainerResponse.Status" => delete_container_response::Status {
            "UNKNOWN" => Unknown = 0, "DELETING" => Deleting = 1,
            "DOES_NOT_EXIST" => DoesNotExist = 2, "FAILED" => Failed = 3,
        }
        "vm_tools.tremplin.StartContainerRequest.PrivilegeLevel" => start_container_request::PrivilegeLevel {
            "UNCHANGED" => Unchanged = 0, "UNPRIVILEGED" => Unprivileged = 1,
            "PRIVILEGED" => Privileged = 2,
        }
        "vm_tools.tremplin.StartContainerResponse.Status" => start_container_response::Status {
            "UNKNOWN" => Unknown = 0, "STARTED" => Started = 1, "RUNNING" => Running = 2,
            "FAILED" => Failed = 3, "STARTING" => Starting = 4, "REMAPPING" => Remapping = 5,
        }
        "vm_tools.tremplin.StopContainerResponse.Status" => stop_container_response::Status {
            "UNKNOWN" => Unknown = 0, "STOPPED" => Stopped = 1, "STOPPING" => Stopping = 2,
            "DOES_NOT_EXIST" => DoesNotExist = 3, "FAILED" => Failed = 4,
        }
        "vm_tools.tremplin.GetContainerUsernameResponse.Status" => get_container_username_response::Status {
            "UNKNOWN" => Unknown = 0, "SUCCESS" => Success = 1,
            "CONTAINER_NOT_FOUND" => ContainerNotFound = 2,
            "CONTAINER_NOT_RUNNING" => ContainerNotRunning = 3,
            "USER_NOT_FOUND" => UserNotFound = 4, "FAILED" => Failed = 5,
        }
        "vm_tools.tremplin.SetUpUserResponse.Status" => set_up_user_response::Status {
            "UNKNOWN" => Unknown = 0, "SUCCESS" => Success = 1, "EXISTS" => Exists = 2,
            "FAILED" => Failed = 3,
        }
        "vm_tools.tremplin.ContainerCreationProgress.Status" => container_creation_progress::Status {
            "UNKNOWN" => Unknown = 0, "DOWNLOADING" => Downloading = 1, "CREATED" => Created = 2,
            "DOWNLOAD_TIMED_OUT" => DownloadTimedOut = 3, "CANCELLED" => Cancelled = 4,
            "FAILED" => Failed = 5,
        }
        "vm_tools.tremplin.ContainerDeletionProgress.Status" => container_deletion_progress::Status {
            "UNKNOWN" => Unknown = 0, "DELETED" => Deleted = 1, "CANCELLED" => Cancelled = 2,
            "FAILED" => Failed = 3,
        }
        "vm_tools.tremplin.ContainerStartProgress.Status" => container_start_progress::Status {
            "UNKNOWN" => Unknown = 0, "STARTED" => Started = 1, "CANCELLED" => Cancelled = 2,
            "FAILED" => Failed = 3, "STARTING" => Starting = 4,
        }
        "vm_tools.tremplin.ContainerStopProgress.Status" => container_stop_progress::Status {
            "UNKNOWN" => Unknown = 0, "STOPPED" => Stopped = 1, "STOPPING" => Stopping = 2,
            "CANCELLED" => Cancelled = 3, "FAILED" => Failed = 4,
        }
        "vm_tools.tremplin.GetContainerInfoResponse.Status" => get_container_info_response::Status {
            "UNKNOWN" => Unknown = 0, "RUNNING" => Running = 1, "STOPPED" => Stopped = 2,
            "NOT_FOUND" => NotFound = 3, "FAILED" => Failed = 4,
        }
        "vm_tools.tremplin.ExportContainerResponse.Status" => export_container_response::Status {
            "UNKNOWN" => Unknown = 0, "EXPORTING" => Exporting = 1, "FAILED" => Failed = 2,
        }
        "vm_tools.tremplin.CancelExportContainerResponse.Status" => cancel_export_container_response::Status {
            "UNKNOWN" => Unknown = 0, "CANCEL_QUEUED" => CancelQueued = 1,
            "OPERATION_NOT_FOUND" => OperationNotFound = 2,
        }
        "vm_tools.tremplin.ContainerExportProgress.Status" => container_export_progress::Status {
            "UNKNOWN" => Unknown = 0, "DONE" => Done = 1, "FAILED" => Failed = 2,
            "EXPORTING_TAR" => ExportingTar = 3, "EXPORTING_COMPRESS" => ExportingCompress = 4,
            "EXPORTING_DOWNLOAD" => ExportingDownload = 5, "EXPORTING_PACK" => ExportingPack = 6,
            "EXPORTING_STREAMING" => ExportingStreaming = 7, "CANCELLED" => Cancelled = 8,
        }
        "vm_tools.tremplin.ImportContainerResponse.Status" => import_container_response::Status {
            "UNKNOWN" => Unknown = 0, "IMPORTING" => Importing = 1, "FAILED" => Failed = 2,
        }
        "vm_tools.tremplin.CancelImportContainerResponse.Status" => cancel_import_container_response::Status {
            "UNKNOWN" => Unknown = 0, "CANCEL_QUEUED" => CancelQueued = 1,
            "OPERATION_NOT_FOUND" => OperationNotFound = 2,
        }
        "vm_tools.tremplin.ContainerImportProgress.Status" => container_import_progress::Status {
            "UNKNOWN" => Unknown = 0, "DONE" => Done = 1, "FAILED" => Failed = 2,
            "IMPORTING_UPLOAD" => ImportingUpload = 3, "IMPORTING_UNPACK" => ImportingUnpack = 4,
            "FAILED_ARCHITECTURE" => FailedArchitecture = 5, "FAILED_SPACE" => FailedSpace = 6,
            "CANCELLED" => Cancelled = 7,
        }
        "vm_tools.tremplin.AttachUsbToContainerResponse.Status" => attach_usb_to_container_response::Status {
            "UNKNOWN" => Unknown = 0, "OK" => Ok = 1, "NO_SUCH_CONTAINER" => NoSuchContainer = 2,
            "FAILED" => Failed = 3,
        }
        "vm_tools.tremplin.DetachUsbFromContainerResponse.Status" => detach_usb_from_container_response::Status {
            "UNKNOWN" => Unknown = 0, "OK" => Ok = 1, "FAILED" => Failed = 2,
        }
        "vm_tools.tremplin.VmDevice" => tremplin::VmDevice {
            "MICROPHONE" => Microphone = 0, "CAMERA" => Camera = 1,
        }
        "vm_tools.tremplin.VmDeviceAction" => tremplin::VmDeviceAction {
            "ENABLE" => Enable = 0, "DISABLE" => Disable = 1,
        }
        "vm_tools.tremplin.UpdateContainerDevicesResponse.Status" => update_container_devices_response::Status {
            "UNKNOWN" => Unknown = 0, "OK" => Ok = 1, "NO_SUCH_CONTAINER" => NoSuchContainer = 2,
            "FAILED" => Failed = 3,
        }
        "vm_tools.tremplin.UpdateContainerDevicesResponse.UpdateResult" => update_container_devices_response::UpdateResult {
            "SUCCESS" => Success = 0, "NO_SUCH_VM_DEVICE" => NoSuchVmDevice = 1,
            "UPDATE_FAILED" => UpdateFailed = 2,
        }

        // ---- garcon-service.md §2.3 ----
        "vm_tools.container.ContainerFeature" => container::ContainerFeature {
            "UNKNOWN" => Unknown = 0, "ENABLE_GTK3_IME_SUPPORT" => EnableGtk3ImeSupport = 1,
            "ENABLE_VIRTUAL_KEYBOARD_SUPPORT" => EnableVirtualKeyboardSupport = 2,
            "ENABLE_QT_IME_SUPPORT" => EnableQtImeSupport = 3,
        }
        "vm_tools.container.LaunchApplicationRequest.DisplayScaling" => launch_application_request::DisplayScaling {
            "UNSCALED" => Unscaled = 0, "SCALED" => Scaled = 1,
        }
        "vm_tools.container.DesktopIcon.Format" => desktop_icon::Format {
            "PNG" => Png = 0, "SVG" => Svg = 1,
        }
        "vm_tools.container.InstallLinuxPackageResponse.Status" => install_linux_package_response::Status {
            "STARTED" => Started = 0, "FAILED" => Failed = 1,
            "INSTALL_ALREADY_ACTIVE" => InstallAlreadyActive = 2,
        }
        "vm_tools.container.UninstallPackageOwningFileResponse.Status" => uninstall_package_owning_file_response::Status {
            "STARTED" => Started = 0, "FAILED" => Failed = 1,
            "BLOCKING_OPERATION_IN_PROGRESS" => BlockingOperationInProgress = 2,
        }
        "vm_tools.container.ApplyAnsiblePlaybookResponse.Status" => apply_ansible_playbook_response::Status {
            "UNKNOWN" => Unknown = 0, "STARTED" => Started = 1, "FAILED" => Failed = 2,
        }
        "vm_tools.container.ConfigureForArcSideloadResponse.Status" => configure_for_arc_sideload_response::Status {
            "UNKNOWN" => Unknown = 0, "SUCCEEDED" => Succeeded = 2, "FAILED" => Failed = 3,
        }
        "vm_tools.container.AddFileWatchResponse.Status" => add_file_watch_response::Status {
            "UNKNOWN" => Unknown = 0, "FAILED" => Failed = 1, "SUCCEEDED" => Succeeded = 2,
        }
        "vm_tools.container.RemoveFileWatchResponse.Status" => remove_file_watch_response::Status {
            "UNKNOWN" => Unknown = 0, "FAILED" => Failed = 1, "SUCCEEDED" => Succeeded = 2,
        }
        "vm_tools.container.GetGarconSessionInfoResponse.Status" => get_garcon_session_info_response::Status {
            "UNKNOWN" => Unknown = 0, "FAILED" => Failed = 1, "SUCCEEDED" => Succeeded = 2,
        }

        // ---- garcon-host.md §2.3 / garcon-service.md §2.4 ----
        "vm_tools.container.InstallLinuxPackageProgressInfo.Status" => install_linux_package_progress_info::Status {
            "SUCCEEDED" => Succeeded = 0, "FAILED" => Failed = 1,
            "DOWNLOADING" => Downloading = 2, "INSTALLING" => Installing = 3,
        }
        "vm_tools.container.UninstallPackageProgressInfo.Status" => uninstall_package_progress_info::Status {
            "SUCCEEDED" => Succeeded = 0, "FAILED" => Failed = 1,
            "UNINSTALLING" => Uninstalling = 2,
        }
        "vm_tools.container.ApplyAnsiblePlaybookProgressInfo.Status" => apply_ansible_playbook_progress_info::Status {
            "UNKNOWN" => Unknown = 0, "SUCCEEDED" => Succeeded = 1, "FAILED" => Failed = 2,
            "IN_PROGRESS" => InProgress = 3,
        }
    }
}

fn collect_nested(prefix: &str, msg: &DescriptorProto, out: &mut EnumTable) {
    let msg_name = format!("{prefix}.{}", msg.name());
    for e in &msg.enum_type {
        let values = e
            .value
            .iter()
            .map(|v| (v.name().to_string(), v.number()))
            .collect();
        out.insert(format!("{msg_name}.{}", e.name()), values);
    }
    for nested in &msg.nested_type {
        collect_nested(&msg_name, nested, out);
    }
}

fn descriptor_enums() -> EnumTable {
    let fds = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
    let mut out = EnumTable::new();
    for file in &fds.file {
        let pkg = file.package();
        for e in &file.enum_type {
            let values = e
                .value
                .iter()
                .map(|v| (v.name().to_string(), v.number()))
                .collect();
            out.insert(format!("{pkg}.{}", e.name()), values);
        }
        for msg in &file.message_type {
            collect_nested(pkg, msg, &mut out);
        }
    }
    out
}

#[test]
fn every_enum_value_has_the_spec_number() {
    // Rust-level assertions run inside expected_enums().
    let expected = expected_enums();
    assert_eq!(
        expected.len(),
        39,
        "26 tremplin + 10 garcon + 3 listener enums"
    );
}

#[test]
fn descriptor_enums_match_spec_exactly() {
    let expected = expected_enums();
    let actual = descriptor_enums();
    // Compare key sets first for a readable failure, then the full tables.
    let exp_keys: Vec<_> = expected.keys().collect();
    let act_keys: Vec<_> = actual.keys().collect();
    assert_eq!(act_keys, exp_keys);
    assert_eq!(actual, expected);
}

#[test]
fn unknown_enum_numbers_are_preserved_not_rejected() {
    // prost stores enum fields as i32; out-of-range numbers survive a round trip
    // (spec: host rejects them, tremplin must handle privilege level 7 explicitly).
    let req = tremplin::StartContainerRequest {
        privilege_level: 7,
        ..Default::default()
    };
    assert!(
        tremplin::start_container_request::PrivilegeLevel::try_from(req.privilege_level).is_err()
    );
    let bytes = req.encode_to_vec();
    assert_eq!(bytes, [0x30, 0x07]); // field 6 varint: (6<<3)|0 = 0x30, value 7
    let back = tremplin::StartContainerRequest::decode(bytes.as_slice()).expect("decode");
    assert_eq!(back.privilege_level, 7);
}
