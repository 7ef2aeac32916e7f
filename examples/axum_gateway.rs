//! An axum app on one port: a small page at `/` whose JavaScript speaks the
//! SP WebSocket mapping, and a cooked REP socket at `/sp` answering
//! `echo: <request>`. nng and nanomsg REQ clients can dial `ws://.../sp` too.
//!
//! ```text
//! cargo run --example axum_gateway -- --listen 127.0.0.1:8080
//! # then open http://127.0.0.1:8080/ in a browser, or:
//! nngcat --req --connect ws://127.0.0.1:8080/sp --data hi
//! ```

use axum::response::Html;
use axum::routing::get;
use axum::Router;

/// The page: sends three requests on load (4-byte request id with the top
/// bit set, then the payload) and writes each reply into the list.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>spstack gateway</title></head>
<body>
<h1>spstack REQ over WebSocket</h1>
<p id="status">connecting</p>
<ul id="replies"></ul>
<script>
const status = document.getElementById("status");
const list = document.getElementById("replies");
const url = location.origin.replace(/^http/, "ws") + "/sp";
const ws = new WebSocket(url, "rep.sp.nanomsg.org");
ws.binaryType = "arraybuffer";
const pending = new Map();
let next = 1;
function request(text) {
  const id = (0x80000000 | next++) >>> 0;
  const body = new TextEncoder().encode(text);
  const msg = new Uint8Array(4 + body.length);
  new DataView(msg.buffer).setUint32(0, id);
  msg.set(body, 4);
  pending.set(id, text);
  ws.send(msg);
}
ws.onopen = () => {
  status.textContent = "open, protocol " + ws.protocol;
  ["alpha", "beta", "gamma"].forEach(request);
};
ws.onmessage = (ev) => {
  const bytes = new Uint8Array(ev.data);
  const id = new DataView(ev.data).getUint32(0);
  if (!pending.has(id)) return;
  pending.delete(id);
  const li = document.createElement("li");
  li.className = "reply";
  li.textContent = new TextDecoder().decode(bytes.subarray(4));
  list.appendChild(li);
  if (pending.size === 0) status.textContent = "done: 3 replies";
};
ws.onerror = () => { status.textContent = "error"; };
</script>
</body></html>
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = "127.0.0.1:8080".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs host:port")?,
            "-h" | "--help" => {
                println!("usage: axum_gateway [--listen HOST:PORT]   (default 127.0.0.1:8080)");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; try --help").into()),
        }
    }

    let rep = spstack::typed::rep0().build();
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/sp", spstack::ws::axum::endpoint(rep.socket()));

    // answer every request; a REP context serves one request at a time
    let server = rep.clone();
    tokio::spawn(async move {
        loop {
            let req = match server.recv().await {
                Ok(m) => m,
                Err(spstack::Error::Closed) => return,
                Err(e) => {
                    eprintln!("recv: {e}");
                    continue;
                }
            };
            let mut reply = b"echo: ".to_vec();
            reply.extend_from_slice(req.body());
            if let Err(e) = server.send(reply).await {
                eprintln!("send: {e}");
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}/");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await?;
    Ok(())
}
