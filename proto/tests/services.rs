//! Service names and gRPC method paths (tremplin.md §2.1/§2.2,
//! garcon-service.md §2.1, garcon-host.md §2.1/§2.2/§2.4).
//!
//! Three independent checks:
//! 1. the descriptor set has exactly the expected services, rpcs and
//!    request/response types;
//! 2. the generated server `SERVICE_NAME` constants and the generated method
//!    path strings (`/pkg.Service/Rpc`) are right;
//! 3. every client method compiles with the spec's request and response types.

use std::collections::BTreeMap;

use crostini_proto::{
    cicerone, container, tremplin, vm_tools, FILE_DESCRIPTOR_SET, GENERATED_OUT_DIR,
};
use prost::Message as _;
use prost_types::FileDescriptorSet;

/// (rpc, request full name, response full name)
type Rpcs = Vec<(&'static str, &'static str, &'static str)>;

fn expected_services() -> BTreeMap<&'static str, Rpcs> {
    const T: &str = "vm_tools.tremplin.";
    const C: &str = "vm_tools.container.";
    let t = |s: &'static str| -> &'static str { Box::leak(format!("{T}{s}").into_boxed_str()) };
    let c = |s: &'static str| -> &'static str { Box::leak(format!("{C}{s}").into_boxed_str()) };
    let empty = "vm_tools.EmptyMessage";
    let t_empty = "vm_tools.tremplin.EmptyMessage";

    let mut m = BTreeMap::new();
    m.insert(
        "vm_tools.tremplin.Tremplin",
        vec![
            ("StartLxd", t("StartLxdRequest"), t("StartLxdResponse")),
            (
                "CreateContainer",
                t("CreateContainerRequest"),
                t("CreateContainerResponse"),
            ),
            (
                "DeleteContainer",
                t("DeleteContainerRequest"),
                t("DeleteContainerResponse"),
            ),
            (
                "StartContainer",
                t("StartContainerRequest"),
                t("StartContainerResponse"),
            ),
            (
                "StopContainer",
                t("StopContainerRequest"),
                t("StopContainerResponse"),
            ),
            (
                "GetContainerUsername",
                t("GetContainerUsernameRequest"),
                t("GetContainerUsernameResponse"),
            ),
            ("SetUpUser", t("SetUpUserRequest"), t("SetUpUserResponse")),
            (
                "GetContainerInfo",
                t("GetContainerInfoRequest"),
                t("GetContainerInfoResponse"),
            ),
            (
                "SetTimezone",
                t("SetTimezoneRequest"),
                t("SetTimezoneResponse"),
            ),
            (
                "ExportContainer",
                t("ExportContainerRequest"),
                t("ExportContainerResponse"),
            ),
            (
                "CancelExportContainer",
                t("CancelExportContainerRequest"),
                t("CancelExportContainerResponse"),
            ),
            (
                "ImportContainer",
                t("ImportContainerRequest"),
                t("ImportContainerResponse"),
            ),
            (
                "CancelImportContainer",
                t("CancelImportContainerRequest"),
                t("CancelImportContainerResponse"),
            ),
            (
                "HostNetworkChanged",
                t("HostNetworkChangedRequest"),
                t("HostNetworkChangedResponse"),
            ),
            (
                "GetDebugInfo",
                t("GetDebugInfoRequest"),
                t("GetDebugInfoResponse"),
            ),
            (
                "AttachUsbToContainer",
                t("AttachUsbToContainerRequest"),
                t("AttachUsbToContainerResponse"),
            ),
            (
                "DetachUsbFromContainer",
                t("DetachUsbFromContainerRequest"),
                t("DetachUsbFromContainerResponse"),
            ),
            (
                "UpdateContainerDevices",
                t("UpdateContainerDevicesRequest"),
                t("UpdateContainerDevicesResponse"),
            ),
        ],
    );
    m.insert(
        "vm_tools.tremplin.TremplinListener",
        vec![
            ("TremplinReady", t("TremplinStartupInfo"), t_empty),
            ("UpdateStartLxdStatus", t("StartLxdProgress"), t_empty),
            (
                "UpdateCreateStatus",
                t("ContainerCreationProgress"),
                t_empty,
            ),
            (
                "UpdateDeletionStatus",
                t("ContainerDeletionProgress"),
                t_empty,
            ),
            ("UpdateStartStatus", t("ContainerStartProgress"), t_empty),
            ("UpdateStopStatus", t("ContainerStopProgress"), t_empty),
            ("UpdateExportStatus", t("ContainerExportProgress"), t_empty),
            ("UpdateImportStatus", t("ContainerImportProgress"), t_empty),
            ("ContainerShutdown", t("ContainerShutdownInfo"), t_empty),
            ("UpdateListeningPorts", t("ListeningPortInfo"), t_empty),
        ],
    );
    m.insert(
        "vm_tools.container.Garcon",
        vec![
            (
                "LaunchApplication",
                c("LaunchApplicationRequest"),
                c("LaunchApplicationResponse"),
            ),
            ("GetIcon", c("IconRequest"), c("IconResponse")),
            (
                "LaunchVshd",
                c("LaunchVshdRequest"),
                c("LaunchVshdResponse"),
            ),
            (
                "GetLinuxPackageInfo",
                c("LinuxPackageInfoRequest"),
                c("LinuxPackageInfoResponse"),
            ),
            (
                "InstallLinuxPackage",
                c("InstallLinuxPackageRequest"),
                c("InstallLinuxPackageResponse"),
            ),
            (
                "UninstallPackageOwningFile",
                c("UninstallPackageOwningFileRequest"),
                c("UninstallPackageOwningFileResponse"),
            ),
            (
                "GetDebugInformation",
                c("GetDebugInformationRequest"),
                c("GetDebugInformationResponse"),
            ),
            (
                "ConnectChunnel",
                c("ConnectChunnelRequest"),
                c("ConnectChunnelResponse"),
            ),
            (
                "ApplyAnsiblePlaybook",
                c("ApplyAnsiblePlaybookRequest"),
                c("ApplyAnsiblePlaybookResponse"),
            ),
            (
                "ConfigureForArcSideload",
                c("ConfigureForArcSideloadRequest"),
                c("ConfigureForArcSideloadResponse"),
            ),
            (
                "AddFileWatch",
                c("AddFileWatchRequest"),
                c("AddFileWatchResponse"),
            ),
            (
                "RemoveFileWatch",
                c("RemoveFileWatchRequest"),
                c("RemoveFileWatchResponse"),
            ),
            (
                "GetGarconSessionInfo",
                c("GetGarconSessionInfoRequest"),
                c("GetGarconSessionInfoResponse"),
            ),
        ],
    );
    m.insert(
        "vm_tools.container.ContainerListener",
        vec![
            ("ContainerReady", c("ContainerStartupInfo"), empty),
            ("ContainerShutdown", c("ContainerShutdownInfo"), empty),
            (
                "UpdateApplicationList",
                c("UpdateApplicationListRequest"),
                empty,
            ),
            (
                "PendingUpdateApplicationListCalls",
                c("PendingAppListUpdateCount"),
                empty,
            ),
            ("OpenUrl", c("OpenUrlRequest"), empty),
            (
                "InstallLinuxPackageProgress",
                c("InstallLinuxPackageProgressInfo"),
                empty,
            ),
            (
                "UninstallPackageProgress",
                c("UninstallPackageProgressInfo"),
                empty,
            ),
            (
                "ApplyAnsiblePlaybookProgress",
                c("ApplyAnsiblePlaybookProgressInfo"),
                empty,
            ),
            ("OpenTerminal", c("OpenTerminalRequest"), empty),
            ("UpdateMimeTypes", c("UpdateMimeTypesRequest"), empty),
            ("FileWatchTriggered", c("FileWatchTriggeredInfo"), empty),
            (
                "LowDiskSpaceTriggered",
                c("LowDiskSpaceTriggeredInfo"),
                empty,
            ),
            (
                "ForwardSecurityKeyMessage",
                c("ForwardSecurityKeyMessageRequest"),
                c("ForwardSecurityKeyMessageResponse"),
            ),
            (
                "SelectFile",
                c("SelectFileRequest"),
                c("SelectFileResponse"),
            ),
            (
                "ReportMetrics",
                c("ReportMetricsRequest"),
                c("ReportMetricsResponse"),
            ),
            ("InstallShaderCache", c("InstallShaderCacheRequest"), empty),
            (
                "UninstallShaderCache",
                c("UninstallShaderCacheRequest"),
                empty,
            ),
            ("UnmountShaderCache", c("UnmountShaderCacheRequest"), empty),
            ("InhibitScreensaver", c("InhibitScreensaverInfo"), empty),
            ("UninhibitScreensaver", c("UninhibitScreensaverInfo"), empty),
        ],
    );
    m.insert(
        "vm_tools.cicerone.CrashListener",
        vec![(
            "SendFailureReport",
            "vm_tools.cicerone.FailureReport",
            empty,
        )],
    );
    m
}

#[test]
fn descriptor_services_match_spec_exactly() {
    let fds = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
    let mut actual: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for file in &fds.file {
        for svc in &file.service {
            let rpcs = svc
                .method
                .iter()
                .map(|m| {
                    assert!(
                        !m.client_streaming() && !m.server_streaming(),
                        "{} is unary",
                        m.name()
                    );
                    (
                        m.name().to_string(),
                        m.input_type().trim_start_matches('.').to_string(),
                        m.output_type().trim_start_matches('.').to_string(),
                    )
                })
                .collect();
            actual.insert(format!("{}.{}", file.package(), svc.name()), rpcs);
        }
    }
    let expected: BTreeMap<String, Vec<(String, String, String)>> = expected_services()
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                v.into_iter()
                    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(actual, expected);
}

#[test]
fn server_service_names() {
    assert_eq!(
        tremplin::tremplin_server::SERVICE_NAME,
        "vm_tools.tremplin.Tremplin"
    );
    assert_eq!(
        tremplin::tremplin_listener_server::SERVICE_NAME,
        "vm_tools.tremplin.TremplinListener"
    );
    assert_eq!(
        container::garcon_server::SERVICE_NAME,
        "vm_tools.container.Garcon"
    );
    assert_eq!(
        container::container_listener_server::SERVICE_NAME,
        "vm_tools.container.ContainerListener"
    );
    assert_eq!(
        cicerone::crash_listener_server::SERVICE_NAME,
        "vm_tools.cicerone.CrashListener"
    );
}

#[test]
fn generated_code_contains_every_method_path() {
    let files = [
        "vm_tools.tremplin.rs",
        "vm_tools.container.rs",
        "vm_tools.cicerone.rs",
    ];
    let mut generated = String::new();
    for f in files {
        let path = std::path::Path::new(GENERATED_OUT_DIR).join(f);
        generated.push_str(&std::fs::read_to_string(&path).expect("generated file readable"));
    }
    let mut count = 0;
    for (service, rpcs) in expected_services() {
        for (rpc, _, _) in rpcs {
            let path = format!("\"/{service}/{rpc}\"");
            // Once in the client, once in the server router.
            assert!(
                generated.matches(&path).count() >= 2,
                "method path {path} missing from generated client/server"
            );
            count += 1;
        }
    }
    assert_eq!(count, 18 + 10 + 13 + 20 + 1);
}

// ---- Client methods with the spec's request/response types (compile-time) ----

type Ch = tonic::transport::Channel;
type R<T> = Result<tonic::Response<T>, tonic::Status>;

#[allow(dead_code)]
async fn tremplin_client_calls(mut c: tremplin::tremplin_client::TremplinClient<Ch>) {
    use tremplin::*;
    let _: R<StartLxdResponse> = c.start_lxd(StartLxdRequest::default()).await;
    let _: R<CreateContainerResponse> = c.create_container(CreateContainerRequest::default()).await;
    let _: R<DeleteContainerResponse> = c.delete_container(DeleteContainerRequest::default()).await;
    let _: R<StartContainerResponse> = c.start_container(StartContainerRequest::default()).await;
    let _: R<StopContainerResponse> = c.stop_container(StopContainerRequest::default()).await;
    let _: R<GetContainerUsernameResponse> = c
        .get_container_username(GetContainerUsernameRequest::default())
        .await;
    let _: R<SetUpUserResponse> = c.set_up_user(SetUpUserRequest::default()).await;
    let _: R<GetContainerInfoResponse> = c
        .get_container_info(GetContainerInfoRequest::default())
        .await;
    let _: R<SetTimezoneResponse> = c.set_timezone(SetTimezoneRequest::default()).await;
    let _: R<ExportContainerResponse> = c.export_container(ExportContainerRequest::default()).await;
    let _: R<CancelExportContainerResponse> = c
        .cancel_export_container(CancelExportContainerRequest::default())
        .await;
    let _: R<ImportContainerResponse> = c.import_container(ImportContainerRequest::default()).await;
    let _: R<CancelImportContainerResponse> = c
        .cancel_import_container(CancelImportContainerRequest::default())
        .await;
    let _: R<HostNetworkChangedResponse> = c
        .host_network_changed(HostNetworkChangedRequest::default())
        .await;
    let _: R<GetDebugInfoResponse> = c.get_debug_info(GetDebugInfoRequest::default()).await;
    let _: R<AttachUsbToContainerResponse> = c
        .attach_usb_to_container(AttachUsbToContainerRequest::default())
        .await;
    let _: R<DetachUsbFromContainerResponse> = c
        .detach_usb_from_container(DetachUsbFromContainerRequest::default())
        .await;
    let _: R<UpdateContainerDevicesResponse> = c
        .update_container_devices(UpdateContainerDevicesRequest::default())
        .await;
}

#[allow(dead_code)]
async fn tremplin_listener_client_calls(
    mut c: tremplin::tremplin_listener_client::TremplinListenerClient<Ch>,
) {
    use tremplin::*;
    let _: R<EmptyMessage> = c.tremplin_ready(TremplinStartupInfo::default()).await;
    let _: R<EmptyMessage> = c.update_start_lxd_status(StartLxdProgress::default()).await;
    let _: R<EmptyMessage> = c
        .update_create_status(ContainerCreationProgress::default())
        .await;
    let _: R<EmptyMessage> = c
        .update_deletion_status(ContainerDeletionProgress::default())
        .await;
    let _: R<EmptyMessage> = c
        .update_start_status(ContainerStartProgress::default())
        .await;
    let _: R<EmptyMessage> = c.update_stop_status(ContainerStopProgress::default()).await;
    let _: R<EmptyMessage> = c
        .update_export_status(ContainerExportProgress::default())
        .await;
    let _: R<EmptyMessage> = c
        .update_import_status(ContainerImportProgress::default())
        .await;
    let _: R<EmptyMessage> = c.container_shutdown(ContainerShutdownInfo::default()).await;
    let _: R<EmptyMessage> = c.update_listening_ports(ListeningPortInfo::default()).await;
}

#[allow(dead_code)]
async fn garcon_client_calls(mut c: container::garcon_client::GarconClient<Ch>) {
    use container::*;
    let _: R<LaunchApplicationResponse> = c
        .launch_application(LaunchApplicationRequest::default())
        .await;
    let _: R<IconResponse> = c.get_icon(IconRequest::default()).await;
    let _: R<LaunchVshdResponse> = c.launch_vshd(LaunchVshdRequest::default()).await;
    let _: R<LinuxPackageInfoResponse> = c
        .get_linux_package_info(LinuxPackageInfoRequest::default())
        .await;
    let _: R<InstallLinuxPackageResponse> = c
        .install_linux_package(InstallLinuxPackageRequest::default())
        .await;
    let _: R<UninstallPackageOwningFileResponse> = c
        .uninstall_package_owning_file(UninstallPackageOwningFileRequest::default())
        .await;
    let _: R<GetDebugInformationResponse> = c
        .get_debug_information(GetDebugInformationRequest::default())
        .await;
    let _: R<ConnectChunnelResponse> = c.connect_chunnel(ConnectChunnelRequest::default()).await;
    let _: R<ApplyAnsiblePlaybookResponse> = c
        .apply_ansible_playbook(ApplyAnsiblePlaybookRequest::default())
        .await;
    let _: R<ConfigureForArcSideloadResponse> = c
        .configure_for_arc_sideload(ConfigureForArcSideloadRequest::default())
        .await;
    let _: R<AddFileWatchResponse> = c.add_file_watch(AddFileWatchRequest::default()).await;
    let _: R<RemoveFileWatchResponse> =
        c.remove_file_watch(RemoveFileWatchRequest::default()).await;
    let _: R<GetGarconSessionInfoResponse> = c
        .get_garcon_session_info(GetGarconSessionInfoRequest::default())
        .await;
}

#[allow(dead_code)]
async fn container_listener_client_calls(
    mut c: container::container_listener_client::ContainerListenerClient<Ch>,
) {
    use container::*;
    use vm_tools::EmptyMessage;
    let _: R<EmptyMessage> = c.container_ready(ContainerStartupInfo::default()).await;
    let _: R<EmptyMessage> = c.container_shutdown(ContainerShutdownInfo::default()).await;
    let _: R<EmptyMessage> = c
        .update_application_list(UpdateApplicationListRequest::default())
        .await;
    let _: R<EmptyMessage> = c
        .pending_update_application_list_calls(PendingAppListUpdateCount::default())
        .await;
    let _: R<EmptyMessage> = c.open_url(OpenUrlRequest::default()).await;
    let _: R<EmptyMessage> = c
        .install_linux_package_progress(InstallLinuxPackageProgressInfo::default())
        .await;
    let _: R<EmptyMessage> = c
        .uninstall_package_progress(UninstallPackageProgressInfo::default())
        .await;
    let _: R<EmptyMessage> = c
        .apply_ansible_playbook_progress(ApplyAnsiblePlaybookProgressInfo::default())
        .await;
    let _: R<EmptyMessage> = c.open_terminal(OpenTerminalRequest::default()).await;
    let _: R<EmptyMessage> = c.update_mime_types(UpdateMimeTypesRequest::default()).await;
    let _: R<EmptyMessage> = c
        .file_watch_triggered(FileWatchTriggeredInfo::default())
        .await;
    let _: R<EmptyMessage> = c
        .low_disk_space_triggered(LowDiskSpaceTriggeredInfo::default())
        .await;
    let _: R<ForwardSecurityKeyMessageResponse> = c
        .forward_security_key_message(ForwardSecurityKeyMessageRequest::default())
        .await;
    let _: R<SelectFileResponse> = c.select_file(SelectFileRequest::default()).await;
    let _: R<ReportMetricsResponse> = c.report_metrics(ReportMetricsRequest::default()).await;
    let _: R<EmptyMessage> = c
        .install_shader_cache(InstallShaderCacheRequest::default())
        .await;
    let _: R<EmptyMessage> = c
        .uninstall_shader_cache(UninstallShaderCacheRequest::default())
        .await;
    let _: R<EmptyMessage> = c
        .unmount_shader_cache(UnmountShaderCacheRequest::default())
        .await;
    let _: R<EmptyMessage> = c
        .inhibit_screensaver(InhibitScreensaverInfo::default())
        .await;
    let _: R<EmptyMessage> = c
        .uninhibit_screensaver(UninhibitScreensaverInfo::default())
        .await;
}

#[allow(dead_code)]
async fn crash_listener_client_calls(
    mut c: cicerone::crash_listener_client::CrashListenerClient<Ch>,
) {
    let _: R<vm_tools::EmptyMessage> = c
        .send_failure_report(cicerone::FailureReport::default())
        .await;
}

#[test]
fn every_client_method_has_the_spec_types() {
    // The async fns above are type-checked at compile time; referencing them
    // here keeps them from being optimized out of the test's intent.
    let _ = tremplin_client_calls;
    let _ = tremplin_listener_client_calls;
    let _ = garcon_client_calls;
    let _ = container_listener_client_calls;
    let _ = crash_listener_client_calls;
}

#[test]
fn listener_empty_messages_are_distinct_types_per_package() {
    // tremplin has its own EmptyMessage; container/cicerone use vm_tools.EmptyMessage.
    fn type_name<T>(_: &T) -> &'static str {
        std::any::type_name::<T>()
    }
    assert!(
        type_name(&tremplin::EmptyMessage::default()).ends_with("vm_tools::tremplin::EmptyMessage")
    );
    assert!(type_name(&vm_tools::EmptyMessage::default()).ends_with("vm_tools::EmptyMessage"));
    assert!(tremplin::EmptyMessage::default().encode_to_vec().is_empty());
    assert!(vm_tools::EmptyMessage::default().encode_to_vec().is_empty());
}
