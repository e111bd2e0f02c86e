//! A VirtualMachineInstance's serial console: KubeVirt's `console` subresource, a websocket that
//! speaks `plain.kubevirt.io` (the guest's bytes, both ways, in binary messages), as `virtctl
//! console` opens it. kube's own `connect` speaks only Kubernetes' channel protocols, so the
//! upgrade is made here, through kube's client (its authentication and TLS included).
//!
//! The websocket lives on a runtime of its own, on a thread of its own: `plan console` moves
//! bytes after the operation's runtime has ended. The `Console` it gives is blocking.

use std::sync::{mpsc, Arc, Mutex};

use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::provider::Console;

/// KubeVirt's console protocol.
pub const PROTOCOL: &str = "plain.kubevirt.io";

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

struct WebsocketConsole {
    /// What the guest wrote, and what of it `recv` has not handed out yet.
    incoming: Mutex<(mpsc::Receiver<Vec<u8>>, Vec<u8>)>,
    outgoing: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
}

impl Console for WebsocketConsole {
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut incoming = self.incoming.lock().unwrap_or_else(|p| p.into_inner());
        if incoming.1.is_empty() {
            match incoming.0.recv() {
                Ok(bytes) => incoming.1 = bytes,
                // The socket closed: the console ended.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(incoming.1.len());
        buf[..n].copy_from_slice(&incoming.1[..n]);
        incoming.1.drain(..n);
        Ok(n)
    }

    fn send(&self, data: &[u8]) -> std::io::Result<()> {
        self.outgoing
            .send(data.to_vec())
            .map_err(|_| std::io::Error::other("the console closed"))
    }
}

/// Opens the console at `path` (`/apis/subresources.kubevirt.io/v1/namespaces/NS/
/// virtualmachineinstances/NAME/console`) with a client made from `config`.
pub fn open(config: kube::Config, path: String) -> Result<Arc<dyn Console>, String> {
    let (ready, opened) = mpsc::channel::<Result<(), String>>();
    let (from_guest, incoming) = mpsc::channel::<Vec<u8>>();
    let (outgoing, mut to_guest) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot start a runtime: {e}")));
                return;
            }
        };
        runtime.block_on(async move {
            let socket = match upgrade(config, &path).await {
                Ok(socket) => {
                    let _ = ready.send(Ok(()));
                    socket
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let (mut sink, mut stream) = socket.split();
            loop {
                tokio::select! {
                    message = stream.next() => match message {
                        Some(Ok(Message::Binary(bytes))) => {
                            if from_guest.send(bytes.to_vec()).is_err() {
                                break;
                            }
                        }
                        Some(Ok(Message::Text(text))) => {
                            if from_guest.send(text.as_bytes().to_vec()).is_err() {
                                break;
                            }
                        }
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => {}
                    },
                    typed = to_guest.recv() => match typed {
                        Some(bytes) => {
                            if sink.send(Message::Binary(bytes.into())).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
            let _ = sink.close().await;
        });
    });
    opened
        .recv()
        .map_err(|_| "the console's thread ended".to_string())??;
    Ok(Arc::new(WebsocketConsole {
        incoming: Mutex::new((incoming, Vec::new())),
        outgoing,
    }))
}

/// The websocket handshake, by hand: kube's `send` carries it (and the credentials), hyper
/// hands over the upgraded connection.
async fn upgrade(config: kube::Config, path: &str) -> Result<Socket, String> {
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
    let key = generate_key();
    let request = http::Request::get(path)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::SEC_WEBSOCKET_VERSION, "13")
        .header(http::header::SEC_WEBSOCKET_KEY, &key)
        .header(http::header::SEC_WEBSOCKET_PROTOCOL, PROTOCOL)
        .body(kube::client::Body::from(Vec::new()))
        .map_err(|e| e.to_string())?;
    let response = client.send(request).await.map_err(|e| e.to_string())?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!(
            "the console subresource answered {} (is the VM running?)",
            response.status()
        ));
    }
    let accepted = response
        .headers()
        .get(http::header::SEC_WEBSOCKET_ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if accepted.as_deref() != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err("the console's websocket handshake did not match".into());
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|e| e.to_string())?;
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await)
}
