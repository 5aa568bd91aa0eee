#![doc = include_str!("../README.md")]

pub mod baseline;
pub mod bench;
pub mod diff;
pub mod evaluate;
pub mod live;
pub mod machine;
pub mod plot;
pub mod replay;
