//! Printer round trip: for any input that parses without errors, printing
//! the tree and parsing the text again gives the same tree (keywords, flags,
//! arguments, forms, heredocs, comments, directives; not line numbers or the
//! original layout).

use kiln_dockerfile::{Ast, Node, parse, print};
use proptest::prelude::*;

fn normalize_node(n: &mut Node) {
    n.original.clear();
    n.start_line = 0;
    n.end_line = 0;
    n.column = 0;
    if let Some(c) = n.child.as_deref_mut() {
        normalize_node(c);
    }
}

fn normalized(ast: &Ast) -> Ast {
    let mut a = ast.clone();
    a.nodes.iter_mut().for_each(normalize_node);
    for d in [
        &mut a.directives.syntax,
        &mut a.directives.escape,
        &mut a.directives.check,
    ]
    .into_iter()
    .flatten()
    {
        d.line = 0;
    }
    a.directives.bom = false;
    a
}

fn check_round_trip(src: &str) -> Result<(), TestCaseError> {
    let first = parse(src.as_bytes());
    if first.has_errors() {
        return Ok(());
    }
    let printed = print(&first.ast);
    let second = parse(printed.as_bytes());
    prop_assert!(
        !second.has_errors(),
        "printed text has errors: {:?}\n{printed}",
        second.diagnostics
    );
    prop_assert_eq!(
        normalized(&first.ast),
        normalized(&second.ast),
        "source:\n{:?}\nprinted:\n{}",
        src,
        printed
    );
    Ok(())
}

const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "ENTRYPOINT",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "LABEL",
    "EXPOSE",
    "VOLUME",
    "USER",
    "WORKDIR",
    "SHELL",
    "HEALTHCHECK",
    "STOPSIGNAL",
    "ONBUILD",
    "MAINTAINER",
    "FOO",
    "run",
    "Copy",
    "onbuild run",
];

fn line() -> impl Strategy<Value = String> {
    let keyword = proptest::sample::select(KEYWORDS);
    let flag = "--[a-z]{1,6}(=[a-z0-9 \"'\\\\,=/]{0,8})?";
    let flags = proptest::collection::vec(flag, 0..3);
    let args = prop_oneof![
        "[ a-zA-Z0-9\"'\\\\$={}\\[\\],:/.#-]{0,24}",
        proptest::collection::vec("[ a-z0-9\"\\\\/]{0,6}", 0..4)
            .prop_map(|v| serde_json::to_string(&v).unwrap_or_default()),
        "[a-z]{1,5}=[a-z\"' ]{0,6}( [a-z]{1,5}=[a-z0-9]{0,4})?",
    ];
    let heredoc = proptest::option::of((
        "(-)?('EOF'|EOF|\"X\")",
        proptest::collection::vec("[\ta-z #$\\\\]{0,8}", 0..3),
    ));
    let comment = proptest::option::of("# [a-z =]{0,10}");
    let continuation = proptest::bool::ANY;
    (keyword, flags, args, heredoc, comment, continuation).prop_map(
        |(kw, flags, args, heredoc, comment, cont)| {
            let mut s = String::new();
            if let Some(c) = comment {
                s.push_str(&c);
                s.push('\n');
            }
            s.push_str(kw);
            for f in flags {
                s.push(' ');
                s.push_str(&f);
            }
            if cont {
                s.push_str(" \\\n  ");
            } else {
                s.push(' ');
            }
            s.push_str(&args);
            if let Some((marker, body)) = heredoc {
                s.push_str(" <<");
                s.push_str(&marker);
                s.push('\n');
                for b in body {
                    s.push_str(&b);
                    s.push('\n');
                }
                let name = marker.trim_start_matches('-').trim_matches(['\'', '"']);
                s.push_str(name);
            }
            s
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn print_then_parse_gives_the_same_tree(
        escape in proptest::bool::ANY,
        lines in proptest::collection::vec(line(), 1..8),
    ) {
        let mut src = String::new();
        if escape {
            src.push_str("# escape=`\n");
        }
        src.push_str(&lines.join("\n"));
        check_round_trip(&src)?;
    }
}

#[test]
fn conformance_files_round_trip() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test_data/buildkit-parser/testfiles");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("testfiles") {
        let src = std::fs::read_to_string(e.expect("entry").path().join("Dockerfile"))
            .expect("Dockerfile");
        check_round_trip(&src).expect("round trip");
        n += 1;
    }
    assert_eq!(n, 33);
}

#[test]
fn prints_an_edited_tree() {
    let mut parsed =
        parse(b"FROM alpine\n# build it\nRUN make \\\n  all\nCOPY [\"a b\", \"/c\"]\n");
    assert!(!parsed.has_errors());
    // A tool edits the tree: new flag, new base image, new heredoc.
    parsed.ast.nodes[0].args[0] = "debian:12".to_owned();
    parsed.ast.nodes[1]
        .flags
        .push("--mount=type=cache,target=/root/.cache".to_owned());
    let mut copy = parsed.ast.nodes[2].clone();
    copy.json = false;
    copy.args = vec!["<<EOF".to_owned(), "/etc/motd".to_owned()];
    copy.heredocs = vec![kiln_dockerfile::Heredoc {
        name: "EOF".to_owned(),
        fd: 0,
        chomp: false,
        expand: true,
        content: "hello\n".to_owned(),
    }];
    parsed.ast.nodes.push(copy);
    let text = print(&parsed.ast);
    assert_eq!(
        text,
        "FROM debian:12\n# build it\nRUN --mount=type=cache,target=/root/.cache make   all\nCOPY [\"a b\",\"/c\"]\nCOPY <<EOF /etc/motd\nhello\nEOF\n"
    );
    let again = parse(text.as_bytes());
    assert_eq!(normalized(&again.ast), normalized(&parsed.ast));
}
