//! PAX-format sparse files: the `GNU.sparse.*` records GNU tar writes with
//! `--format=pax --sparse` (formats 0.0, 0.1 and 1.0), which tar-rs reads
//! as plain files. The map says which (offset, length) segments of the real
//! file the entry's data holds, in order; everything else is a hole.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// The sparse description of one entry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PaxSparse {
    /// The real name (`GNU.sparse.name`), when given.
    pub(crate) name: Option<Vec<u8>>,
    /// The size of the real file.
    pub(crate) real_size: u64,
    /// The segments, or `None` when the map starts the data (format 1.0).
    pub(crate) map: Option<Vec<(u64, u64)>>,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("invalid PAX sparse file: {what}"),
    )
}

fn number(v: &[u8]) -> io::Result<u64> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| invalid("not a number"))
}

/// Reads the `GNU.sparse.*` records of an entry's PAX header (in order:
/// format 0.0 repeats `offset`/`numbytes` pairs). `None` when the entry is
/// not a PAX sparse file.
pub(crate) fn from_pax<'a>(
    records: impl Iterator<Item = io::Result<(&'a [u8], &'a [u8])>>,
) -> io::Result<Option<PaxSparse>> {
    let (mut major, mut minor, mut name, mut real_size) = (None, None, None, None);
    let (mut map, mut offsets, mut lengths) = (None, Vec::new(), Vec::new());
    let mut any = false;
    for record in records {
        let (key, value) = record?;
        let Some(key) = key.strip_prefix(b"GNU.sparse.") else {
            continue;
        };
        any = true;
        match key {
            b"major" => major = Some(number(value)?),
            b"minor" => minor = Some(number(value)?),
            b"name" => name = Some(value.to_vec()),
            b"realsize" | b"size" => real_size = Some(number(value)?),
            b"offset" => offsets.push(number(value)?),
            b"numbytes" => lengths.push(number(value)?),
            b"map" => {
                let numbers = if value.is_empty() {
                    Vec::new()
                } else {
                    value
                        .split(|&b| b == b',')
                        .map(number)
                        .collect::<io::Result<Vec<u64>>>()?
                };
                if numbers.len() % 2 != 0 {
                    return Err(invalid("odd number of values in GNU.sparse.map"));
                }
                map = Some(numbers.chunks(2).map(|p| (p[0], p[1])).collect());
            }
            _ => {}
        }
    }
    if !any {
        return Ok(None);
    }
    let real_size = real_size.ok_or_else(|| invalid("no real size"))?;
    let map = match (major, minor) {
        (Some(1), Some(0)) => None,
        // 0.0 and 0.1 carry no version records; accept them spelled out too.
        (None | Some(0), None | Some(0) | Some(1)) => match map {
            Some(m) => Some(m),
            None if offsets.len() == lengths.len() => {
                Some(offsets.into_iter().zip(lengths).collect())
            }
            None => return Err(invalid("offsets and lengths do not pair up")),
        },
        _ => return Err(invalid("unknown format version")),
    };
    Ok(Some(PaxSparse {
        name,
        real_size,
        map,
    }))
}

/// Reads the format 1.0 map from the start of the data: decimal numbers one
/// a line (the count, then offset and length pairs), padded with NULs to a
/// 512-byte block.
fn read_map(data: &mut impl Read) -> io::Result<Vec<(u64, u64)>> {
    let mut text = Vec::new();
    let mut numbers: Vec<u64> = Vec::new();
    let mut want: Option<u64> = None;
    let mut start = 0;
    let mut block = [0u8; 512];
    loop {
        data.read_exact(&mut block)
            .map_err(|_| invalid("map runs past the data"))?;
        text.extend_from_slice(&block);
        while let Some(nl) = text[start..].iter().position(|&b| b == b'\n') {
            numbers.push(number(&text[start..start + nl])?);
            start += nl + 1;
            let want = *want.get_or_insert_with(|| numbers[0].saturating_mul(2).saturating_add(1));
            if numbers.len() as u64 == want {
                return Ok(numbers[1..].chunks(2).map(|p| (p[0], p[1])).collect());
            }
        }
    }
}

/// Writes the real file: each segment of the map at its offset, holes
/// between, and the file extended to the real size. Segments must be in
/// order, not overlap and lie within the real size.
pub(crate) fn write(
    sparse: &PaxSparse,
    data: &mut impl Read,
    file: &mut File,
    buf: &mut [u8],
) -> io::Result<()> {
    let from_data: Vec<(u64, u64)>;
    let map = match &sparse.map {
        Some(m) => m,
        None => {
            from_data = read_map(data)?;
            &from_data
        }
    };
    let mut end = 0u64;
    for &(offset, len) in map {
        let seg_end = offset
            .checked_add(len)
            .filter(|&e| offset >= end && e <= sparse.real_size)
            .ok_or_else(|| invalid("segments out of order or past the real size"))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            let n = match data.read(&mut buf[..want]) {
                Ok(0) => return Err(invalid("data shorter than the map")),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            file.write_all(&buf[..n])?;
            left -= n as u64;
        }
        end = seg_end;
    }
    file.set_len(sparse.real_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(records: &[(&str, &str)]) -> io::Result<Option<PaxSparse>> {
        from_pax(
            records
                .iter()
                .map(|(k, v)| Ok((k.as_bytes(), v.as_bytes()))),
        )
    }

    #[test]
    fn the_three_gnu_formats_are_recognised() {
        assert_eq!(parse(&[("path", "x")]).unwrap(), None);
        let v00 = parse(&[
            ("GNU.sparse.size", "100"),
            ("GNU.sparse.numblocks", "2"),
            ("GNU.sparse.offset", "0"),
            ("GNU.sparse.numbytes", "10"),
            ("GNU.sparse.offset", "90"),
            ("GNU.sparse.numbytes", "10"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(v00.map, Some(vec![(0, 10), (90, 10)]));
        assert_eq!((v00.real_size, v00.name), (100, None));
        let v01 = parse(&[
            ("GNU.sparse.size", "100"),
            ("GNU.sparse.name", "real"),
            ("GNU.sparse.map", "0,10,90,10"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(v01.map, Some(vec![(0, 10), (90, 10)]));
        assert_eq!(v01.name.as_deref(), Some(&b"real"[..]));
        let v10 = parse(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "real"),
            ("GNU.sparse.realsize", "100"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((v10.map, v10.real_size), (None, 100));
        for bad in [
            &[("GNU.sparse.map", "0,1")][..],
            &[("GNU.sparse.size", "9"), ("GNU.sparse.map", "0,1,2")],
            &[("GNU.sparse.size", "9"), ("GNU.sparse.major", "2")],
            &[("GNU.sparse.size", "x")],
            &[("GNU.sparse.size", "9"), ("GNU.sparse.offset", "1")],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hostile_maps_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut buf = vec![0u8; 64];
        type Case<'a> = (&'a [(u64, u64)], u64, &'a [u8]);
        let cases: [Case<'_>; 4] = [
            (&[(10, 5), (0, 5)], 100, &[1; 10]),   // out of order
            (&[(0, 5), (3, 5)], 100, &[1; 10]),    // overlapping
            (&[(95, 10)], 100, &[1; 10]),          // past the real size
            (&[(u64::MAX, 2)], u64::MAX, &[1; 2]), // overflow
        ];
        for (map, real_size, data) in cases {
            let sparse = PaxSparse {
                name: None,
                real_size,
                map: Some(map.to_vec()),
            };
            let mut f = File::create(tmp.path().join("f")).unwrap();
            assert!(
                write(&sparse, &mut &data[..], &mut f, &mut buf).is_err(),
                "{map:?}"
            );
        }
        // A 1.0 map announcing more pairs than the data holds.
        let sparse = PaxSparse {
            name: None,
            real_size: 10,
            map: None,
        };
        let mut data = b"1000000\n0\n".to_vec();
        data.resize(512, 0);
        let mut f = File::create(tmp.path().join("g")).unwrap();
        assert!(write(&sparse, &mut &data[..], &mut f, &mut buf).is_err());
    }
}
