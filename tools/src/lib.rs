#![doc = include_str!("../README.md")]

pub mod diff;
pub mod replay;
