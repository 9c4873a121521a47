//! A minimal, bounds-checked FlatBuffers reader: just tables, scalars, vectors and strings, which is
//! all the TFLite schema needs here. Every read is checked; malformed files give `None`, never a panic.

/// A table in a buffer: `pos` is where its soffset to the vtable sits.
#[derive(Clone, Copy, Debug)]
pub struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A vector: `len` elements of `elem` bytes starting at `start`.
#[derive(Clone, Copy, Debug)]
pub struct Vector<'a> {
    buf: &'a [u8],
    start: usize,
    len: usize,
    elem: usize,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// The root table of a buffer, after checking the 4-byte file identifier when one is given.
pub fn root<'a>(buf: &'a [u8], ident: Option<&[u8; 4]>) -> Option<Table<'a>> {
    if let Some(id) = ident {
        if buf.get(4..8)? != id {
            return None;
        }
    }
    Table::at(buf, u32_at(buf, 0)? as usize)
}

impl<'a> Table<'a> {
    fn at(buf: &'a [u8], pos: usize) -> Option<Table<'a>> {
        u32_at(buf, pos)?; // the soffset must be readable
        Some(Table { buf, pos })
    }

    /// Absolute position of field `id`, or `None` when absent (use the schema default).
    fn field(&self, id: usize) -> Option<usize> {
        let soff = u32_at(self.buf, self.pos)? as i32 as i64;
        let vt = usize::try_from(self.pos as i64 - soff).ok()?;
        let vt_len = u16_at(self.buf, vt)? as usize;
        let slot = 4 + 2 * id;
        if slot + 2 > vt_len {
            return None;
        }
        let off = u16_at(self.buf, vt + slot)? as usize;
        if off == 0 {
            None
        } else {
            self.pos.checked_add(off)
        }
    }

    fn deref(&self, id: usize) -> Option<usize> {
        let at = self.field(id)?;
        at.checked_add(u32_at(self.buf, at)? as usize)
    }

    pub fn u8(&self, id: usize, default: u8) -> u8 {
        self.field(id).and_then(|p| self.buf.get(p).copied()).unwrap_or(default)
    }
    pub fn i32(&self, id: usize, default: i32) -> i32 {
        self.field(id).and_then(|p| u32_at(self.buf, p)).map(|v| v as i32).unwrap_or(default)
    }
    pub fn u32(&self, id: usize, default: u32) -> u32 {
        self.field(id).and_then(|p| u32_at(self.buf, p)).unwrap_or(default)
    }
    pub fn f32(&self, id: usize, default: f32) -> f32 {
        self.field(id).and_then(|p| u32_at(self.buf, p)).map(f32::from_bits).unwrap_or(default)
    }
    pub fn table(&self, id: usize) -> Option<Table<'a>> {
        Table::at(self.buf, self.deref(id)?)
    }
    /// A vector field with `elem`-byte elements (4 for offsets to tables/strings).
    pub fn vector(&self, id: usize, elem: usize) -> Option<Vector<'a>> {
        let at = self.deref(id)?;
        let len = u32_at(self.buf, at)? as usize;
        let start = at.checked_add(4)?;
        let end = start.checked_add(len.checked_mul(elem)?)?;
        if end > self.buf.len() {
            return None;
        }
        Some(Vector { buf: self.buf, start, len, elem })
    }
    pub fn string(&self, id: usize) -> Option<&'a str> {
        let v = self.vector(id, 1)?;
        core::str::from_utf8(v.bytes()).ok()
    }
}

impl<'a> Vector<'a> {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The raw element bytes (already bounds-checked at construction).
    pub fn bytes(&self) -> &'a [u8] {
        self.buf.get(self.start..self.start + self.len * self.elem).unwrap_or(&[])
    }
    fn pos(&self, i: usize) -> Option<usize> {
        (i < self.len).then(|| self.start + i * self.elem)
    }
    pub fn i32(&self, i: usize) -> Option<i32> {
        u32_at(self.buf, self.pos(i)?).map(|v| v as i32)
    }
    pub fn f32(&self, i: usize) -> Option<f32> {
        u32_at(self.buf, self.pos(i)?).map(f32::from_bits)
    }
    pub fn i64(&self, i: usize) -> Option<i64> {
        u64_at(self.buf, self.pos(i)?).map(|v| v as i64)
    }
    pub fn table(&self, i: usize) -> Option<Table<'a>> {
        let p = self.pos(i)?;
        Table::at(self.buf, p.checked_add(u32_at(self.buf, p)? as usize)?)
    }
    pub fn i32s(&self) -> Vec<i32> {
        (0..self.len).filter_map(|i| self.i32(i)).collect()
    }
    pub fn f32s(&self) -> Vec<f32> {
        (0..self.len).filter_map(|i| self.f32(i)).collect()
    }
    pub fn i64s(&self) -> Vec<i64> {
        (0..self.len).filter_map(|i| self.i64(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-assembled buffer: root table with an i32 field 0 = 7, field 1 absent, a vector field 2.
    fn sample() -> Vec<u8> {
        let mut b = vec![0u8; 44];
        b[0..4].copy_from_slice(&12u32.to_le_bytes()); // root table at 12
        b[4..8].copy_from_slice(b"TEST");
        // table at 12: soffset = 12 - 24 = -12 -> vtable at 24
        b[12..16].copy_from_slice(&(-12i32).to_le_bytes());
        b[16..20].copy_from_slice(&7i32.to_le_bytes()); // field 0 at table+4
        b[20..24].copy_from_slice(&16u32.to_le_bytes()); // field 2 at table+8 -> vector at 36
                                                         // vtable at 24: len 10, table size 12, field0 off 4, field1 0, field2 off 8
        for (i, v) in [10u16, 12, 4, 0, 8].iter().enumerate() {
            b[24 + 2 * i..26 + 2 * i].copy_from_slice(&v.to_le_bytes());
        }
        b[36..40].copy_from_slice(&1u32.to_le_bytes()); // vector len 1
        b[40..44].copy_from_slice(&(-5i32).to_le_bytes());
        b
    }

    #[test]
    fn reads_fields_defaults_and_vectors() {
        let b = sample();
        let t = root(&b, Some(b"TEST")).unwrap();
        assert_eq!(t.i32(0, 0), 7);
        assert_eq!(t.i32(1, 42), 42);
        assert_eq!(t.i32(9, -1), -1); // beyond the vtable
        assert_eq!(t.vector(2, 4).unwrap().i32s(), vec![-5]);
        assert!(root(&b, Some(b"TFL3")).is_none());
    }

    #[test]
    fn truncated_buffers_never_panic() {
        let b = sample();
        for n in 0..b.len() {
            if let Some(t) = root(&b[..n], None) {
                let _ = (t.i32(0, 0), t.vector(2, 4).map(|v| v.i32s()), t.table(2), t.string(2));
            }
        }
    }
}
