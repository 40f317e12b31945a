//! The loader's unit tests by phase, on the heap platform and objects written by the tests
//! themselves (`crate::testing`). Small tests of one table or function stay next to it.

mod debuggers;
mod layout;
mod link;
mod names;
mod overlay;
mod parse;
mod permissions;
mod policy;
mod prelink;
mod reclaim;
mod resolve;
mod swap;
mod system;
mod teardown;
mod unwind;
