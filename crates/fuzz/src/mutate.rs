//! A small mutation engine in the spirit of libFuzzer's: byte and bit flips, interesting
//! values, inserted and deleted ranges, splices between seeds, and protobuf- and TLS-shaped
//! edits (varints, field keys, length prefixes), so that mutants get past the first length check.

use rand::Rng;

const INTERESTING_8: [u8; 9] = [0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x08, 0x3a];
const INTERESTING_32: [u32; 8] = [
    0,
    1,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x0100_0000,
];

/// One input built from the corpus: a seed (or nothing), one to eight edits.
pub fn mutate(rng: &mut impl Rng, corpus: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    let mut data = if corpus.is_empty() || rng.gen_ratio(1, 50) {
        Vec::new()
    } else {
        corpus[rng.gen_range(0..corpus.len())].clone()
    };
    let edits = 1 + rng.gen_range(0..8u32).min(rng.gen_range(0..8u32));
    for _ in 0..edits {
        edit(rng, &mut data, corpus);
    }
    data.truncate(max_len);
    data
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn random_varint_value(rng: &mut impl Rng) -> u64 {
    match rng.gen_range(0..6) {
        0 => 0,
        1 => u64::MAX,
        2 => rng.gen_range(0..128),
        3 => 1 << rng.gen_range(0..64),
        4 => u64::from(u32::MAX),
        _ => rng.gen(),
    }
}

fn edit(rng: &mut impl Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = data.len();
    let at = |rng: &mut dyn rand::RngCore| {
        if len == 0 {
            0
        } else {
            rng.gen_range(0..len)
        }
    };
    match rng.gen_range(0..14) {
        // Flip a bit.
        0 if len > 0 => {
            let i = at(rng);
            data[i] ^= 1 << rng.gen_range(0..8);
        }
        // Set a byte, random or interesting.
        1 if len > 0 => {
            let i = at(rng);
            data[i] = if rng.gen() {
                rng.gen()
            } else {
                INTERESTING_8[rng.gen_range(0..INTERESTING_8.len())]
            };
        }
        // Insert random bytes.
        2 => {
            let i = if len == 0 { 0 } else { rng.gen_range(0..=len) };
            let n = rng.gen_range(1..=16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            data.splice(i..i, bytes);
        }
        // Delete a range.
        3 if len > 0 => {
            let i = at(rng);
            let n = rng.gen_range(1..=(len - i).min(64));
            data.drain(i..i + n);
        }
        // Duplicate a range (repeated fields, repeated entries).
        4 if len > 0 => {
            let i = at(rng);
            let n = rng.gen_range(1..=(len - i).min(256));
            let copy = data[i..i + n].to_vec();
            let times = rng.gen_range(1..=8);
            for _ in 0..times {
                let j = rng.gen_range(0..=data.len());
                data.splice(j..j, copy.iter().copied());
            }
        }
        // Truncate.
        5 if len > 0 => data.truncate(at(rng)),
        // Splice a piece of another seed.
        6 if !corpus.is_empty() => {
            let other = &corpus[rng.gen_range(0..corpus.len())];
            if !other.is_empty() {
                let i = rng.gen_range(0..other.len());
                let n = rng.gen_range(1..=(other.len() - i).min(512));
                let j = if len == 0 { 0 } else { rng.gen_range(0..=len) };
                data.splice(j..j, other[i..i + n].iter().copied());
            }
        }
        // Insert a protobuf field: key (field 1..20, any wire type) and a value.
        7 => {
            let mut field = Vec::new();
            let number = rng.gen_range(1..=20u64);
            let wire = rng.gen_range(0..8u64);
            varint(number << 3 | wire, &mut field);
            match wire {
                0 => varint(random_varint_value(rng), &mut field),
                1 => field.extend_from_slice(&rng.gen::<u64>().to_le_bytes()),
                2 => {
                    let n = rng.gen_range(0..24usize);
                    varint(
                        if rng.gen_ratio(1, 8) {
                            random_varint_value(rng)
                        } else {
                            n as u64
                        },
                        &mut field,
                    );
                    field.extend((0..n).map(|_| rng.gen::<u8>()));
                }
                5 => field.extend_from_slice(&rng.gen::<u32>().to_le_bytes()),
                _ => {}
            }
            let i = if len == 0 { 0 } else { rng.gen_range(0..=len) };
            data.splice(i..i, field);
        }
        // Overwrite with a varint.
        8 if len > 0 => {
            let i = at(rng);
            let mut v = Vec::new();
            varint(random_varint_value(rng), &mut v);
            let end = (i + v.len()).min(data.len());
            data.splice(i..end, v);
        }
        // Overwrite four bytes with an interesting big-endian u32 (TLS and blob lengths).
        9 if len >= 4 => {
            let i = rng.gen_range(0..=len - 4);
            let v = INTERESTING_32[rng.gen_range(0..INTERESTING_32.len())];
            data[i..i + 4].copy_from_slice(&v.to_be_bytes());
        }
        // Overwrite two bytes with a big-endian u16 (TLS vector lengths, enum values).
        10 if len >= 2 => {
            let i = rng.gen_range(0..=len - 2);
            let v: u16 = if rng.gen() { rng.gen() } else { 0xffff };
            data[i..i + 2].copy_from_slice(&v.to_be_bytes());
        }
        // Add or subtract a little from a byte (lengths off by one).
        11 if len > 0 => {
            let i = at(rng);
            let delta = rng.gen_range(1..=8u8);
            data[i] = if rng.gen() {
                data[i].wrapping_add(delta)
            } else {
                data[i].wrapping_sub(delta)
            };
        }
        // ASCII-shaped edits for text formats (TOML, JSON, hex).
        12 => {
            const TOKENS: &[&str] = &[
                "\"",
                "=",
                "[",
                "]",
                "{",
                "}",
                ",",
                ":",
                "\n",
                "\\u0000",
                "-1",
                "1e999",
                "18446744073709551616",
                "null",
                "true",
                "0x",
                "'''",
                "#",
                "\\",
                "é",
            ];
            let token = TOKENS[rng.gen_range(0..TOKENS.len())].as_bytes();
            let i = if len == 0 { 0 } else { rng.gen_range(0..=len) };
            data.splice(i..i, token.iter().copied());
        }
        // Swap two bytes.
        _ if len > 1 => {
            let (i, j) = (at(rng), at(rng));
            data.swap(i, j);
        }
        _ => data.push(rng.gen()),
    }
}
