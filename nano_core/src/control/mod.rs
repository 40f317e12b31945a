//! The control channel: driving a running system from outside it.
//!
//! `nano_core --serve SOCKET` boots the kernel cells and then serves a Unix socket until told to
//! quit. The wire format (one request line, a reply that ends in `ok` or `error: <message>`) is
//! the `control-protocol` crate's, shared with the client in `build-tools`. The requests are the
//! rows of one table ([`commands::COMMANDS`]), which `help` prints.
//!
//! The files, by concern:
//!
//! | file | what |
//! |------|------|
//! | `protocol.rs` | reading a request line within its deadline, the limits, the [`Response`] |
//! | `server.rs` | the serve loop ([`serve`]): the kernel thread, the acceptor and the client threads |
//! | `commands.rs` | the command table and [`dispatch`] |
//! | `swap.rs` | `swap`: its arguments, what `--fresh` would split, the reply |
//! | `views.rs` | `ls`, `ns`, `status`, `apps` and a swap's report, as text |
//! | `load.rs` | the background load of `--load N` ([`Load`]) |
//! | `load_unload.rs` | `load` and `unload`: loading and unloading cells while the system runs |
//! | `watch.rs` | `--watch`: swapping in rebuilt cells ([`Watch`]) |
//! | `socket.rs`, `signals.rs` | the socket file, SIGINT and SIGTERM |
//!
//! With `--load N`, N threads keep calling through cell handles while the server runs, counting
//! calls and failures, so that a person can swap under load and see that no call failed. With
//! `--watch`, the server polls `<cells>/manifest.json` and swaps in every live cell whose object a
//! rebuild changed. Retired versions are reclaimed once no thread can run them any more
//! ([`Kernel::reclaim_retired`](crate::kernel::Kernel)), after swaps and on `reclaim`.

pub mod commands;
pub mod load;
pub mod load_unload;
pub mod protocol;
pub mod server;
mod signals;
mod socket;
pub mod swap;
pub mod views;
pub mod watch;

pub use commands::{dispatch, COMMANDS};
pub use control_protocol::{Reply, MAX_REQUEST};
pub use load::{Load, LoadStatus, ProbeStatus};
pub use protocol::Response;
pub use server::{serve, ServeOptions};
pub use swap::render_swap;
pub use views::{ls, ns};
pub use watch::Watch;
