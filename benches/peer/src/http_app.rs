//! The one axum app every HTTP contender serves: `GET /` answers `hello`, `POST /echo` its
//! body. The first request a process answers is its "serving" mark (see `server.rs`).
use std::sync::OnceLock;

use axum::Router;
use axum::routing::{get, post};

use crate::server::FirstAccept;

static FIRST: OnceLock<FirstAccept> = OnceLock::new();

pub fn app(args: &crate::server::Args) -> Router {
    let _ = FIRST.set(FirstAccept::new(args));
    Router::new()
        .route(
            "/",
            get(|| async {
                if let Some(f) = FIRST.get() {
                    f.hit();
                }
                "hello\n"
            }),
        )
        .route("/echo", post(|body: String| async move { body }))
}
