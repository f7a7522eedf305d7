//! The control socket: `creativeflow verify`, `backup` and `user create` while the server runs.
//!
//! redb holds an exclusive lock on its file, so a second process cannot open a live store. The
//! server therefore listens on a Unix socket in the data folder and runs those commands itself,
//! on a consistent snapshot. With no server running, the CLI opens the store directly.
//!
//! Who may use it: the socket is created inside the data folder, which is 0700 before the socket
//! exists (so there is no moment between `bind` and `chmod` when another user could connect),
//! is itself 0600, and every connection's peer credentials (`SO_PEERCRED`) must name the
//! server's own uid; anyone else is refused before a byte is read.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use actix_web::web;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use crate::commands::{backup, created, failed, parse_user_create, verify, Answer};
use crate::services::users::{self, NewUser};
use crate::state::AppState;

pub const SOCKET_FILE: &str = "control.sock";
/// A request line longer than this is refused.
const REQUEST_BYTES_MAX: usize = 64 * 1024;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Verify,
    Backup {
        out: PathBuf,
    },
    UserCreate {
        email: String,
        password: String,
        name: String,
        role: String,
    },
}

/// One line of the answer: progress lines, then exactly one `done`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Progress(String),
    Done { ok: bool, lines: Vec<String> },
}

pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlServer {
    pub fn start(state: web::Data<AppState>) -> std::io::Result<ControlServer> {
        let path = socket_path(&state.config.data_dir);
        // A socket left by a killed server: nothing listens on it (the store lock proved that).
        let _ = std::fs::remove_file(&path);
        storage::private_dir(&state.config.data_dir)?;
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let own_uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&path)?);
        let task = actix_web::rt::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => match stream.peer_cred().map(|c| c.uid()) {
                        Ok(uid) if uid == own_uid => {
                            actix_web::rt::spawn(handle(stream, state.clone()));
                        }
                        Ok(uid) => {
                            tracing::warn!(
                                uid,
                                "control socket: connection from another user refused"
                            );
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "control socket: peer credentials unreadable; refused");
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(ControlServer { path, task })
    }

    pub fn stop(&self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn handle(stream: tokio::net::UnixStream, state: web::Data<AppState>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(REQUEST_BYTES_MAX as u64));
    let request = match reader.read_line(&mut line).await {
        Ok(_) => serde_json::from_str::<Request>(&line).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let (tx, mut rx) = mpsc::channel::<Reply>(64);
    let worker = actix_web::rt::spawn(async move {
        let done = match request {
            Ok(r) => dispatch(r, &state, tx.clone()).await,
            Err(e) => Reply::Done {
                ok: false,
                lines: vec![format!("bad request: {e}")],
            },
        };
        let _ = tx.send(done).await;
    });
    while let Some(reply) = rx.recv().await {
        let Ok(mut text) = serde_json::to_string(&reply) else {
            break;
        };
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            break;
        }
        if matches!(reply, Reply::Done { .. }) {
            break;
        }
    }
    let _ = worker.await;
}

/// Runs a request inside the server, streaming progress to `tx`.
async fn dispatch(request: Request, state: &web::Data<AppState>, tx: mpsc::Sender<Reply>) -> Reply {
    let done = |(ok, lines): Answer| Reply::Done { ok, lines };
    let progress_tx = tx.clone();
    let mut progress = move |line: &str| {
        let _ = progress_tx.blocking_send(Reply::Progress(line.to_string()));
    };
    match request {
        Request::Verify => {
            let store = state.store.clone();
            match web::block(move || verify(&store, &mut progress)).await {
                Ok(a) => done(a),
                Err(e) => done((false, vec![e.to_string()])),
            }
        }
        Request::Backup { out } => {
            let store = state.store.clone();
            match web::block(move || backup(&store, &out, &mut progress)).await {
                Ok(a) => done(a),
                Err(e) => done((false, vec![e.to_string()])),
            }
        }
        Request::UserCreate {
            email,
            password,
            name,
            role,
        } => {
            let args = match parse_user_create(&email, password, Some(&name), &role) {
                Ok(a) => a,
                Err(e) => return done(failed(e)),
            };
            let hash = match state.hashes.hash(args.password).await {
                Ok(h) => h,
                Err(e) => return done(failed(e)),
            };
            let new = NewUser {
                email: args.email,
                name: args.name,
                password_hash: hash,
                role: args.role,
                signup_grant: state.config.file.credits.signup_grant,
            };
            match users::create_user(&state.store, new).await {
                Ok(u) => done(created(&u)),
                Err(e) => done(failed(e)),
            }
        }
    }
}

/// Client side: `Ok(None)` when no server listens (the caller opens the store itself).
pub fn call(
    data_dir: &Path,
    request: &Request,
    on_progress: &mut dyn FnMut(&str),
) -> std::io::Result<Option<(bool, Vec<String>)>> {
    let path = socket_path(data_dir);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let mut text = serde_json::to_string(request).map_err(std::io::Error::other)?;
    text.push('\n');
    stream.write_all(text.as_bytes())?;
    for line in BufReader::new(stream).lines() {
        match serde_json::from_str::<Reply>(&line?).map_err(std::io::Error::other)? {
            Reply::Progress(p) => on_progress(&p),
            Reply::Done { ok, lines } => return Ok(Some((ok, lines))),
        }
    }
    Err(std::io::Error::other(
        "the server closed the control socket without an answer",
    ))
}
