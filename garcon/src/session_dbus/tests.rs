use super::*;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use zbus::zvariant::{ObjectPath, OwnedValue, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Inhibit(u32, String, String),
    Uninhibit(u32),
    SelectFile(String, String),
}

#[derive(Default)]
struct FakeHost {
    calls: Mutex<Vec<Call>>,
    fail: Mutex<bool>,
    files: Mutex<Vec<String>>,
}

impl FakeHost {
    fn result(&self) -> Result<(), Status> {
        if *self.fail.lock().unwrap() {
            Err(Status::unavailable("host down"))
        } else {
            Ok(())
        }
    }
}

impl SessionHost for FakeHost {
    fn inhibit(
        &self,
        cookie: u32,
        client: String,
        reason: String,
    ) -> BoxFuture<'_, Result<(), Status>> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Inhibit(cookie, client, reason));
        Box::pin(async move { self.result() })
    }

    fn uninhibit(&self, cookie: u32) -> BoxFuture<'_, Result<(), Status>> {
        self.calls.lock().unwrap().push(Call::Uninhibit(cookie));
        Box::pin(async move { self.result() })
    }

    fn select_file(
        &self,
        kind: String,
        title: String,
    ) -> BoxFuture<'_, Result<Vec<String>, Status>> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::SelectFile(kind, title));
        Box::pin(async move { self.result().map(|()| self.files.lock().unwrap().clone()) })
    }
}

/// A private session bus (`dbus-daemon --session`) for one test; killed by pid on drop.
struct PrivateBus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl PrivateBus {
    fn start() -> Option<PrivateBus> {
        let dir = tempfile::tempdir().expect("tempdir");
        let address = format!("unix:path={}", dir.path().join("bus").display());
        let child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(error) => {
                eprintln!("SKIPPED: cannot start dbus-daemon ({error}); install dbus");
                return None;
            }
        };
        let socket = dir.path().join("bus");
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Some(PrivateBus {
            child,
            address,
            _dir: dir,
        })
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn client(bus: &PrivateBus) -> zbus::Connection {
    zbus::connection::Builder::address(bus.address.as_str())
        .expect("address")
        .build()
        .await
        .expect("client connection")
}

/// A proxy for the portal's FileChooser interface.
async fn file_chooser(conn: &zbus::Connection) -> zbus::Proxy<'static> {
    zbus::Proxy::new(
        conn,
        PORTAL_NAME,
        PORTAL_PATH,
        "org.freedesktop.impl.portal.FileChooser",
    )
    .await
    .expect("proxy")
}

#[tokio::test]
async fn screensaver_cookies_count_from_one_and_forward() {
    let Some(bus) = PrivateBus::start() else {
        return;
    };
    let host = Arc::new(FakeHost::default());
    let services = start(host.clone(), Some(&bus.address))
        .await
        .expect("start");
    assert_eq!(services.owned_names, [SCREENSAVER_NAME, PORTAL_NAME]);

    let conn = client(&bus).await;
    let proxy = zbus::Proxy::new(&conn, SCREENSAVER_NAME, SCREENSAVER_PATH, SCREENSAVER_NAME)
        .await
        .expect("proxy");
    let first: u32 = proxy
        .call("Inhibit", &("vlc", "playing"))
        .await
        .expect("inhibit 1");
    // A failing host still yields a cookie and consumes a number.
    *host.fail.lock().unwrap() = true;
    let second: u32 = proxy
        .call("Inhibit", &("mpv", "video"))
        .await
        .expect("inhibit 2");
    *host.fail.lock().unwrap() = false;
    let () = proxy.call("UnInhibit", &(1u32,)).await.expect("uninhibit");
    assert_eq!((first, second), (1, 2));
    assert_eq!(
        *host.calls.lock().unwrap(),
        [
            Call::Inhibit(1, "vlc".into(), "playing".into()),
            Call::Inhibit(2, "mpv".into(), "video".into()),
            Call::Uninhibit(1),
        ]
    );
    // Only the two methods are exported.
    let other: Result<(), zbus::Error> = proxy.call("GetActive", &()).await;
    assert!(other.is_err());
}

#[tokio::test]
async fn portal_open_file_forwards_and_replies_with_uris() {
    let Some(bus) = PrivateBus::start() else {
        return;
    };
    let host = Arc::new(FakeHost::default());
    *host.files.lock().unwrap() = vec!["file:///x".to_string()];
    let _services = start(host.clone(), Some(&bus.address))
        .await
        .expect("start");

    let conn = client(&bus).await;
    let proxy = file_chooser(&conn).await;
    let handle = ObjectPath::try_from("/org/freedesktop/portal/desktop/request/1_1/t").unwrap();
    let no_options: HashMap<&str, Value<'_>> = HashMap::new();
    let (code, results): (u32, HashMap<String, OwnedValue>) = proxy
        .call("OpenFile", &(&handle, "app", "", "Pick one", &no_options))
        .await
        .expect("OpenFile");
    assert_eq!(code, 0);
    let uris: Vec<String> = results["uris"].clone().try_into().expect("as");
    assert_eq!(uris, ["file:///x"]);
    assert!(bool::try_from(&results["writable"]).expect("b"));

    let mut folder: HashMap<&str, Value<'_>> = HashMap::new();
    folder.insert("directory", Value::from(true));
    let (code, _): (u32, HashMap<String, OwnedValue>) = proxy
        .call("OpenFile", &(&handle, "app", "", "Dir", &folder))
        .await
        .expect("OpenFile dir");
    assert_eq!(code, 0);
    let (code, _): (u32, HashMap<String, OwnedValue>) = proxy
        .call("SaveFile", &(&handle, "app", "", "Save", &no_options))
        .await
        .expect("SaveFile");
    assert_eq!(code, 0);

    // Host down: response 1 with an empty dictionary.
    *host.fail.lock().unwrap() = true;
    let (code, results): (u32, HashMap<String, OwnedValue>) = proxy
        .call("SaveFiles", &(&handle, "app", "", "Save all", &no_options))
        .await
        .expect("SaveFiles");
    assert_eq!(code, 1);
    assert!(results.is_empty());

    assert_eq!(
        *host.calls.lock().unwrap(),
        [
            Call::SelectFile("open-file".into(), "Pick one".into()),
            Call::SelectFile("folder".into(), "Dir".into()),
            Call::SelectFile("saveas-file".into(), "Save".into()),
            Call::SelectFile("saveas-file".into(), "Save all".into()),
        ]
    );
}

#[tokio::test]
async fn empty_selection_is_success_with_empty_uris() {
    let Some(bus) = PrivateBus::start() else {
        return;
    };
    let host = Arc::new(FakeHost::default());
    let _services = start(host, Some(&bus.address)).await.expect("start");
    let conn = client(&bus).await;
    let proxy = file_chooser(&conn).await;
    let handle = ObjectPath::try_from("/r/1").unwrap();
    let no_options: HashMap<&str, Value<'_>> = HashMap::new();
    let (code, results): (u32, HashMap<String, OwnedValue>) = proxy
        .call("OpenFile", &(&handle, "app", "", "", &no_options))
        .await
        .expect("OpenFile");
    assert_eq!(code, 0);
    let uris: Vec<String> = results["uris"].clone().try_into().expect("as");
    assert!(uris.is_empty());
}

#[tokio::test]
async fn a_second_instance_runs_without_the_names() {
    let Some(bus) = PrivateBus::start() else {
        return;
    };
    let first = start(Arc::new(FakeHost::default()), Some(&bus.address))
        .await
        .expect("first");
    let second = start(Arc::new(FakeHost::default()), Some(&bus.address))
        .await
        .expect("second still starts");
    assert_eq!(first.owned_names.len(), 2);
    assert!(second.owned_names.is_empty());
}

#[tokio::test]
async fn unreachable_bus_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let address = format!("unix:path={}", dir.path().join("nobody").display());
    let result = start(Arc::new(FakeHost::default()), Some(&address)).await;
    assert!(matches!(result, Err(SessionBusError::Connect(_))));
}
