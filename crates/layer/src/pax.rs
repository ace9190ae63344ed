//! PAX extended-header records: encoding for the writer (tar-rs reads them
//! but cannot write them) and the xattr key convention.

/// The PAX key prefix under which GNU tar, Go and Docker store xattrs.
pub(crate) const XATTR_PREFIX: &str = "SCHILY.xattr.";

/// Whether an xattr belongs to overlayfs itself and must never travel in a
/// layer (in either direction: a layer setting `trusted.overlay.redirect`
/// could make an overlay mount look outside its lower dirs).
pub(crate) fn is_overlay_private(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Encodes one PAX record: `"<len> <key>=<value>\n"`, where `len` counts the
/// whole record including its own digits.
pub(crate) fn record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = 1 + key.len() + 1 + value.len() + 1; // ' ' key '=' value '\n'
    let mut len = rest + 1;
    loop {
        let total = rest + len.to_string().len();
        if total == len {
            break;
        }
        len = total;
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_length_counts_itself() {
        let r = record(b"path", b"a");
        assert_eq!(r, b"9 path=a\n");
        // Crossing a digit boundary: 9 bytes of payload around 100 total.
        let v = vec![b'x'; 89];
        let r = record(b"k", &v);
        let text = String::from_utf8(r.clone()).unwrap();
        let (n, _) = text.split_once(' ').unwrap();
        assert_eq!(n.parse::<usize>().unwrap(), r.len());
    }

    #[test]
    fn overlay_private_names() {
        assert!(is_overlay_private(b"trusted.overlay.opaque"));
        assert!(is_overlay_private(b"user.overlay.redirect"));
        assert!(!is_overlay_private(b"security.capability"));
        assert!(!is_overlay_private(b"user.mime"));
    }
}
