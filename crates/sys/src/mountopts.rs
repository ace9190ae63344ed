//! Overlay option strings: splitting a `lowerdir=` list, and rewriting the
//! options with paths relative to their common directory (what lets a long
//! chain fit mount(2)'s page on kernels without fsconfig's `lowerdir+`).

use std::path::{Component, Path, PathBuf};

/// Splits overlay's `lowerdir=` list at the colons that no backslash
/// escapes, dropping the escapes (an empty element marks `::`).
pub(crate) fn split_lowerdirs(list: &str) -> Vec<String> {
    let mut dirs = vec![String::new()];
    let mut chars = list.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(last)) = (chars.next(), dirs.last_mut()) {
                    last.push(next);
                }
            }
            ':' => dirs.push(String::new()),
            c => {
                if let Some(last) = dirs.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    dirs
}

/// Escapes what overlay's option parser would split a path at.
fn escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '\\' | ':' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The options of an overlay mount with every `lowerdir`, `upperdir` and
/// `workdir` path made relative to the deepest directory they all share,
/// and that directory: mounted from inside it, they mean the same. `None`
/// when a path is relative already or there is no such path.
pub fn overlay_options_relative(options: &[String]) -> Option<(PathBuf, Vec<String>)> {
    // The path options, each as its list of paths (one for upper and work).
    let keyed = |o: &String| -> Option<(&str, Vec<String>)> {
        let (key, value) = o.split_once('=')?;
        match key {
            "lowerdir" => Some(("lowerdir", split_lowerdirs(value))),
            "upperdir" => Some(("upperdir", vec![value.to_owned()])),
            "workdir" => Some(("workdir", vec![value.to_owned()])),
            _ => None,
        }
    };
    let paths: Vec<String> = options
        .iter()
        .filter_map(keyed)
        .flat_map(|(_, v)| v)
        .filter(|p| !p.is_empty())
        .collect();
    if paths.is_empty() || paths.iter().any(|p| !Path::new(p).is_absolute()) {
        return None;
    }
    // The deepest common directory, component by component.
    let mut common: Vec<Component<'_>> = Path::new(&paths[0]).parent()?.components().collect();
    for p in &paths[1..] {
        let parent: Vec<Component<'_>> = Path::new(p).parent()?.components().collect();
        let shared = common
            .iter()
            .zip(&parent)
            .take_while(|(a, b)| a == b)
            .count();
        common.truncate(shared);
    }
    let dir: PathBuf = common.iter().collect();
    // An empty lower (the `::` before data-only layers) stays empty.
    let relative = |p: &String| -> Option<String> {
        if p.is_empty() {
            return Some(String::new());
        }
        Some(escape(Path::new(p).strip_prefix(&dir).ok()?.to_str()?))
    };
    let mut out = Vec::with_capacity(options.len());
    for o in options {
        match keyed(o) {
            Some((key, list)) => {
                let rel: Option<Vec<String>> = list.iter().map(relative).collect();
                out.push(format!("{key}={}", rel?.join(":")));
            }
            None => out.push(o.clone()),
        }
    }
    Some((dir, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowerdir_lists_split_at_unescaped_colons() {
        assert_eq!(split_lowerdirs("/a:/b/c"), ["/a", "/b/c"]);
        assert_eq!(split_lowerdirs(r"/a\:b:/c\\d"), ["/a:b", r"/c\d"]);
        // `::` starts the data-only layers.
        assert_eq!(split_lowerdirs("/a::/d"), ["/a", "", "/d"]);
        assert_eq!(split_lowerdirs("/only"), ["/only"]);
    }

    #[test]
    fn options_become_relative_to_the_deepest_shared_directory() {
        let o = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (dir, rel) = overlay_options_relative(&o(&[
            "index=off",
            "upperdir=/var/lib/kiln/ov/snapshots/9/fs",
            "workdir=/var/lib/kiln/ov/snapshots/9/work",
            "lowerdir=/var/lib/kiln/ov/l/3:/var/lib/kiln/ov/l/2:/var/lib/kiln/ov/l/1",
        ]))
        .expect("absolute paths");
        assert_eq!(dir, Path::new("/var/lib/kiln/ov"));
        assert_eq!(
            rel,
            o(&[
                "index=off",
                "upperdir=snapshots/9/fs",
                "workdir=snapshots/9/work",
                "lowerdir=l/3:l/2:l/1",
            ])
        );
        // Escapes survive, and are added where a relative path needs them.
        let (dir, rel) =
            overlay_options_relative(&o(&[r"lowerdir=/r/a\:b/x:/r/c,d/y"])).expect("absolute");
        assert_eq!(dir, Path::new("/r"));
        assert_eq!(rel, o(&[r"lowerdir=a\:b/x:c\,d/y"]));
        // Only lower dirs, in one directory: their names alone.
        let (dir, rel) = overlay_options_relative(&o(&["lowerdir=/r/l/1:/r/l/2"])).expect("abs");
        assert_eq!((dir, rel), (PathBuf::from("/r/l"), o(&["lowerdir=1:2"])));
        assert!(overlay_options_relative(&o(&["lowerdir=rel/1:/abs"])).is_none());
        assert!(overlay_options_relative(&o(&["index=off"])).is_none());
    }
}
