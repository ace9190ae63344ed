//! Word expansion beyond the conformance tables: every modifier, patterns,
//! which variables were used, lexer modes and the environment adapters.

use std::collections::HashMap;

use kiln_dockerfile::shell::{Env, ExpandErrorKind, Lexer, process_word, process_words};

fn expand(word: &str, env: &[(&str, &str)]) -> Result<String, ExpandErrorKind> {
    process_word(word, env).map_err(|e| e.kind)
}

#[test]
fn modifiers() {
    let env = [("FOO", "xxx"), ("BAR", "")];
    for (word, expected) in [
        ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", "xxx  ccc"),
        ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", "xxx bbb ccc"),
        ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", "aaa bbb "),
        ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", "aaa  "),
        ("${FOO?aaa}", "xxx"),
        ("${BAR?bbb}", ""),
        ("${FOO:?aaa}", "xxx"),
        ("${FOO:-}", "xxx"),
    ] {
        assert_eq!(expand(word, &env).as_deref(), Ok(expected), "{word}");
    }
    for word in [
        "${BAZ?ccc}",
        "${BAR:?bbb}",
        "${BAZ:?}",
        "${FOO=aaa}",
        "${FOO:#}",
        "${FOO:%%}",
    ] {
        assert!(expand(word, &env).is_err(), "{word}");
    }
    assert_eq!(
        expand("${BAZ?ccc}", &env),
        Err(ExpandErrorKind::Required {
            name: "BAZ".into(),
            message: "ccc".into()
        })
    );
}

#[test]
fn patterns() {
    for (word, value, expected) in [
        ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", "()[]{}^$.*?|\\x", "x"),
        ("${FOO%%\\**}", "xx**", "xx"),
        ("${FOO#*x*y}", "xxyy", "y"),
        ("${FOO#*}", "xxyy", "xxyy"),
        ("${FOO#}", "xxyy", "xxyy"),
        ("${FOO##*x}", "xxyy", "yy"),
        ("${FOO#?\\?}", "???y", "?y"),
        ("${FOO%%\\**\\*}", "a***yy*", "a"),
        ("${FOO%x}", "xxyy", "xxyy"),
        ("${FOO//\\//\\/}", "/tmp/foo.txt", "\\/tmp\\/foo.txt"),
        ("${FOO///}", "xxyy", "xxyy"),
    ] {
        assert_eq!(
            expand(word, &[("FOO", value)]).as_deref(),
            Ok(expected),
            "{word}"
        );
    }
    let env = [("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")];
    assert_eq!(
        expand("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", &env).as_deref(),
        Ok("/foo.*/*.txt - /foo..*.txt")
    );
    let env = [("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("R", "/")];
    assert_eq!(
        expand("${FOO/$NEEDLE/$R} - ${FOO//$NEEDLE/$R}", &env).as_deref(),
        Ok("/foo/b/c.txt - /foo/c.txt")
    );
    let env = [
        ("FOO", "http://google.de"),
        ("N", "http://"),
        ("R", "https://"),
    ];
    assert_eq!(
        expand("${FOO/$N/$R}", &env).as_deref(),
        Ok("https://google.de")
    );
    assert_eq!(
        expand("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")]).as_deref(),
        Ok("wwxxyy")
    );
    assert!(expand("${FOO//ww}", &[("FOO", "xxyy")]).is_err());
    assert!(expand("${FOO//}", &[("FOO", "xxyy")]).is_err());
}

#[test]
fn matched_and_unmatched_variables() {
    let env = [("FOO", "xxx"), ("BAR", "")];
    let e = Lexer::new('\\')
        .process("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", &env[..])
        .expect("expands");
    assert_eq!(e.matched.iter().collect::<Vec<_>>(), ["BAR", "FOO"]);
    assert_eq!(e.unmatched.iter().collect::<Vec<_>>(), ["BAZ"]);
    let release =
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
    let env = [
        ("VERSION", "v1.2.3"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "arm"),
        ("TARGETVARIANT", "v7"),
    ];
    assert_eq!(
        expand(release, &env).as_deref(),
        Ok("something-v1.2.3.linux-arm-v7.tar.gz")
    );
    let env = [
        ("VERSION", "v1.2.3"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "arm64"),
    ];
    assert_eq!(
        expand(release, &env).as_deref(),
        Ok("something-v1.2.3.linux-arm64.tar.gz")
    );
}

#[test]
fn environments_and_modes() {
    let list = ["A=1".to_owned(), "B".to_owned(), "A=2".to_owned()];
    assert_eq!(Env::get(&list[..], "A").as_deref(), Some("2"));
    assert_eq!(Env::get(&list[..], "B").as_deref(), Some(""));
    let map: HashMap<String, String> = [("X".to_owned(), "y z".to_owned())].into();
    assert_eq!(process_words("a $X", &map).unwrap(), ["a", "y", "z"]);
    let closure = |n: &str| (n == "N").then(|| "v".to_owned());
    assert_eq!(process_word("${N}${M:-m}", &closure).unwrap(), "vm");

    let raw = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        ..Lexer::new('\\')
    };
    assert_eq!(
        raw.process_words("a\\ b 'c d' \"e\"", &map).unwrap(),
        ["a\\ b", "'c d'", "\"e\""]
    );
    let no_quotes = Lexer {
        skip_process_quotes: true,
        ..Lexer::new('\\')
    };
    assert_eq!(no_quotes.process_word("'$X'", &map).unwrap(), "'y z'");
    let backtick = Lexer::new('`');
    assert_eq!(
        backtick
            .process_word("C:\\dir `$X \"a`\"b\"", &map)
            .unwrap(),
        "C:\\dir $X a\"b"
    );
}
