//! The live connection on the browser's `WebSocket`. A browser cannot set headers on it, so
//! the session token travels as a subprotocol (`parley.bearer.<token>`, next to `parley.v1`,
//! which the server selects); it is as secret there as in an `Authorization` header.

use std::cell::Cell;
use std::rc::Rc;

use futures_channel::mpsc;
use futures_util::StreamExt as _;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast as _;
use web_sys::{BinaryType, Event, MessageEvent, WebSocket};

use super::TlsConfig;
use crate::error::ClientError;

/// Frames the server sent that we have not read yet. The server sends queue-head hints and
/// typing indicators; a reader this far behind reconnects and syncs instead of buffering.
const UNREAD_FRAMES: usize = 256;

enum SocketEvent {
    Open,
    Frame(Vec<u8>),
    Closed,
    Failed,
}

pub struct LiveSocket {
    socket: WebSocket,
    events: mpsc::Receiver<SocketEvent>,
    overflowed: Rc<Cell<bool>>,
    _callbacks: [Closure<dyn FnMut(Event)>; 3],
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

fn failed(what: &str) -> ClientError {
    ClientError::Network(format!("live connection {what}"))
}

impl LiveSocket {
    /// Connects to `url` (`ws://` or `wss://`) as the device holding `token`.
    pub async fn connect(url: &str, token: &str, _tls: &TlsConfig) -> Result<Self, ClientError> {
        let protocols = js_sys::Array::of2(
            &"parley.v1".into(),
            &format!("parley.bearer.{token}").into(),
        );
        let socket = WebSocket::new_with_str_sequence(url, &protocols)
            .map_err(|_| ClientError::Config(format!("not a WebSocket address: {url}")))?;
        socket.set_binary_type(BinaryType::Arraybuffer);
        let (sender, events) = mpsc::channel(UNREAD_FRAMES);
        let overflowed = Rc::new(Cell::new(false));
        let notify = |event: fn() -> SocketEvent| {
            let mut sender = sender.clone();
            Closure::<dyn FnMut(Event)>::new(move |_: Event| {
                let _ = sender.try_send(event());
            })
        };
        let callbacks = [
            notify(|| SocketEvent::Open),
            notify(|| SocketEvent::Failed),
            notify(|| SocketEvent::Closed),
        ];
        socket.set_onopen(Some(callbacks[0].as_ref().unchecked_ref()));
        socket.set_onerror(Some(callbacks[1].as_ref().unchecked_ref()));
        socket.set_onclose(Some(callbacks[2].as_ref().unchecked_ref()));
        let on_message = {
            let (mut sender, overflowed) = (sender.clone(), overflowed.clone());
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let Ok(buffer) = event.data().dyn_into::<js_sys::ArrayBuffer>() else {
                    return; // text frames are not Parley's
                };
                let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
                if sender.try_send(SocketEvent::Frame(bytes)).is_err() {
                    overflowed.set(true);
                }
            })
        };
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let mut live = LiveSocket {
            socket,
            events,
            overflowed,
            _callbacks: callbacks,
            _on_message: on_message,
        };
        match live.events.next().await {
            Some(SocketEvent::Open) => Ok(live),
            _ => Err(failed("failed")),
        }
    }

    /// The next binary frame; `None` once the server closed the connection.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        if self.overflowed.get() {
            return Err(failed("fell behind; reconnecting"));
        }
        match self.events.next().await {
            Some(SocketEvent::Frame(bytes)) => Ok(Some(bytes)),
            Some(SocketEvent::Closed) | None => Ok(None),
            Some(SocketEvent::Failed) => Err(failed("lost")),
            Some(SocketEvent::Open) => Err(failed("opened twice")),
        }
    }

    pub async fn send(&mut self, frame: Vec<u8>) -> Result<(), ClientError> {
        self.socket
            .send_with_u8_array(&frame)
            .map_err(|_| failed("lost"))
    }

    /// Closes (on drop).
    pub async fn close(self) {}
}

impl Drop for LiveSocket {
    fn drop(&mut self) {
        // The callbacks die with this value; the socket must not call them afterwards.
        self.socket.set_onopen(None);
        self.socket.set_onerror(None);
        self.socket.set_onclose(None);
        self.socket.set_onmessage(None);
        let _ = self.socket.close();
    }
}
