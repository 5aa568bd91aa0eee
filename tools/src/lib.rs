#![doc = include_str!("../README.md")]

pub mod diff;
pub mod eval;
pub mod live;
pub mod replay;
