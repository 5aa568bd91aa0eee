//! Byte-level symbolic memory.
//!
//! Every byte of a frame's memory is a constant or a reference to one byte of a byte-string
//! value (`tobytes` of a stored word, calldata, return data). Writes copy references; reads
//! regroup them into `slice`s and `concat`s. Reading back a whole word that was stored whole
//! yields the stored value itself, so the memory round trip of Solidity's ABI encoding
//! folds away. Offsets and sizes are constants by the time they reach here: the tracer
//! guards every one that came from data.

use revm::primitives::Bytes;

use crate::{
    ops::Op,
    program::{Builder, Imm, Value},
    semantics::Val,
};

/// One byte of memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    /// A known byte.
    Byte(u8),
    /// Byte `index` of the byte-string value `src`.
    Ref { src: Value, index: u32 },
}

/// A frame's memory.
#[derive(Clone, Debug, Default)]
pub(crate) struct Memory {
    cells: Vec<Cell>,
}

/// The traced length of a byte-string value.
pub(crate) fn bytes_len(b: &Builder, v: Value) -> usize {
    match b.traced(v) {
        Some(Val::Bytes(bytes)) => bytes.len(),
        _ => 0,
    }
}

impl Memory {
    /// Current size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.cells.len()
    }

    fn ensure(&mut self, end: usize) {
        if end > self.cells.len() {
            // Memory grows in 32-byte words, zero-filled.
            let rounded = end.div_ceil(32) * 32;
            self.cells.resize(rounded, Cell::Byte(0));
        }
    }

    /// Expands memory as an access of `len` bytes at `offset` does (nothing for `len == 0`).
    pub(crate) fn touch(&mut self, offset: usize, len: usize) {
        if len > 0 {
            self.ensure(offset + len);
        }
    }

    /// Writes `len` bytes of the byte string `src` from `src_offset` to `offset`; bytes past
    /// the end of `src` are zero (the EVM's copy semantics).
    pub(crate) fn write(&mut self, b: &Builder, offset: usize, src: Value, src_offset: usize, len: usize) {
        if len == 0 {
            return;
        }
        self.ensure(offset + len);
        let src_len = bytes_len(b, src);
        let constant = match b.program_inst(src).imm {
            Imm::Bytes(ref bytes) if b.program_inst(src).op == Op::ConstBytes => Some(bytes.clone()),
            _ => None,
        };
        for i in 0..len {
            let at = src_offset + i;
            self.cells[offset + i] = match &constant {
                Some(bytes) => Cell::Byte(bytes.get(at).copied().unwrap_or(0)),
                None if at < src_len => Cell::Ref { src, index: at as u32 },
                None => Cell::Byte(0),
            };
        }
    }

    /// Copies `len` bytes within memory (MCOPY), as if through a temporary buffer.
    pub(crate) fn copy_within(&mut self, dest: usize, src: usize, len: usize) {
        if len == 0 {
            return;
        }
        self.ensure(dest.max(src) + len);
        let tmp: Vec<Cell> = self.cells[src..src + len].to_vec();
        self.cells[dest..dest + len].copy_from_slice(&tmp);
    }

    /// Reads `len` bytes at `offset` as one byte-string value.
    pub(crate) fn read(&mut self, b: &mut Builder, offset: usize, len: usize) -> Value {
        if len == 0 {
            return b.bytes(Bytes::new());
        }
        self.ensure(offset + len);
        let cells = &self.cells[offset..offset + len];
        let mut pieces: Vec<Value> = Vec::new();
        let mut i = 0;
        while i < cells.len() {
            match cells[i] {
                Cell::Byte(_) => {
                    let start = i;
                    let mut run = Vec::new();
                    while let Some(Cell::Byte(x)) = cells.get(i) {
                        run.push(*x);
                        i += 1;
                    }
                    debug_assert!(i > start);
                    pieces.push(b.bytes(Bytes::from(run)));
                }
                Cell::Ref { src, index } => {
                    let start = index;
                    let mut n = 0u32;
                    while let Some(Cell::Ref { src: s, index: k }) = cells.get(i) {
                        if *s != src || *k != start + n {
                            break;
                        }
                        n += 1;
                        i += 1;
                    }
                    let whole = start == 0 && n as usize == bytes_len(b, src);
                    pieces.push(if whole { src } else { b.compute_imm(Op::Slice, &[src], Imm::Slice(start, n)) });
                }
            }
        }
        if pieces.len() == 1 { pieces[0] } else { b.compute(Op::Concat, &pieces) }
    }

    /// Reads a 32-byte word at `offset` (MLOAD): the stored word itself when it was stored
    /// whole, else the bytes read as a word.
    pub(crate) fn read_word(&mut self, b: &mut Builder, offset: usize) -> Value {
        let bytes = self.read(b, offset, 32);
        let inst = b.program_inst(bytes);
        if inst.op == Op::ToBytes {
            return inst.args[0];
        }
        b.compute(Op::ToWord, &[bytes])
    }

    /// Stores a word at `offset` (MSTORE).
    pub(crate) fn write_word(&mut self, b: &mut Builder, offset: usize, word: Value) {
        let bytes = b.compute(Op::ToBytes, &[word]);
        self.write(b, offset, bytes, 0, 32);
    }

    /// Stores the low byte of a word at `offset` (MSTORE8).
    pub(crate) fn write_byte(&mut self, b: &mut Builder, offset: usize, word: Value) {
        let bytes = b.compute(Op::ToBytes, &[word]);
        self.write(b, offset, bytes, 31, 1);
    }
}
