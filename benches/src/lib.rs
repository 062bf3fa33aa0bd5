//! Nothing here: this package only holds quartet's criterion benches (`cargo bench`), in
//! `fanout.rs`, `encoding.rs`, `poll.rs` and `delivery.rs` beside this folder. The side-by-side
//! load test of the four transports is `quartet bench`.
