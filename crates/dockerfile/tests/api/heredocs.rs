//! Raw-layer behaviour beyond the conformance data: heredocs, directives,
//! line endings, locations and diagnostics.

use kiln_dockerfile::{Severity, parse};

fn dump(src: &str) -> String {
    let p = parse(src.as_bytes());
    assert!(!p.has_errors(), "{src:?}: {:?}", p.diagnostics);
    p.ast.dump()
}

#[test]
fn run_heredoc_body_is_taken_out_of_the_line_stream() {
    let p = parse(b"FROM alpine\nRUN <<EOF\necho hi\n# not a comment\nEOF\nRUN ls\n");
    assert!(!p.has_errors());
    assert_eq!(
        p.ast.dump(),
        "(from \"alpine\")\n(run \"<<EOF\")\n(run \"ls\")\n"
    );
    let run = &p.ast.nodes[1];
    assert_eq!((run.start_line, run.end_line), (2, 5));
    let h = &run.heredocs[0];
    assert_eq!(
        (h.name.as_str(), h.content.as_str()),
        ("EOF", "echo hi\n# not a comment\n")
    );
    assert!(h.expand && !h.chomp && h.fd == 0);
}

#[test]
fn several_heredocs_on_one_line_are_read_in_order() {
    let p = parse(b"FROM a\nCOPY <<FILE1 <<FILE2 /dest\nc1\nFILE1\nc2\nFILE2\n");
    assert_eq!(
        p.ast.dump(),
        "(from \"a\")\n(copy \"<<FILE1\" \"<<FILE2\" \"/dest\")\n"
    );
    let docs: Vec<_> = p.ast.nodes[1]
        .heredocs
        .iter()
        .map(|h| (h.name.as_str(), h.content.as_str()))
        .collect();
    assert_eq!(docs, [("FILE1", "c1\n"), ("FILE2", "c2\n")]);
}

#[test]
fn chomp_quotes_and_file_descriptors() {
    let p = parse(b"FROM a\nRUN <<-EOF\n\techo x\n\t\tEOF\n");
    let h = &p.ast.nodes[1].heredocs[0];
    assert!(h.chomp);
    assert_eq!(h.content, "\techo x\n");
    assert_eq!(h.chomped(), "echo x\n");

    for (marker, name, expand) in [
        ("<<'EOF'", "EOF", false),
        ("<<\"EOF\"", "EOF", false),
        ("<<eo'f'", "eof", false),
        ("<<EOF", "EOF", true),
        ("<<$EOF", "$EOF", true),
    ] {
        let src = format!("FROM a\nRUN cat {marker}\nbody $X\n{name}\n");
        let p = parse(src.as_bytes());
        assert!(!p.has_errors(), "{marker}: {:?}", p.diagnostics);
        let h = &p.ast.nodes[1].heredocs[0];
        assert_eq!((h.name.as_str(), h.expand), (name, expand), "{marker}");
    }

    let p = parse(b"FROM a\nRUN 3<<EOF cat /dev/fd/3\nx\nEOF\n");
    assert_eq!(p.ast.nodes[1].heredocs[0].fd, 3);
}

#[test]
fn heredocs_only_on_shell_form_run_copy_add() {
    assert_eq!(
        dump("FROM a\nRUN [\"<<EOF\"]\nEOF\n"),
        "(from \"a\")\n(run \"<<EOF\")\n(eof \"\")\n"
    );
    assert_eq!(
        dump("FROM a\nUSER <<INVALID\nINVALID\n"),
        "(from \"a\")\n(user \"<<INVALID\")\n(invalid \"\")\n"
    );
    assert_eq!(
        dump("FROM a\nRUN echo \"<<NOHEREDOC\"\nRUN x\n"),
        "(from \"a\")\n(run \"echo \\\"<<NOHEREDOC\\\"\")\n(run \"x\")\n"
    );
    assert_eq!(
        dump("FROM a\nRUN --mount=type=cache,target=/foo <<MOUNT\nls\nMOUNT\n"),
        "(from \"a\")\n(run [\"--mount=type=cache,target=/foo\"] \"<<MOUNT\")\n"
    );
    let p = parse(b"FROM a\nONBUILD RUN <<EOF\necho\nEOF\n");
    assert_eq!(p.ast.dump(), "(from \"a\")\n(onbuild (run \"<<EOF\"))\n");
    assert_eq!(p.ast.nodes[1].heredocs[0].content, "echo\n");
}

#[test]
fn unterminated_heredoc_is_an_error() {
    let p = parse(b"FROM a\nRUN <<EOF\nabc\n");
    let e: Vec<_> = p.errors().collect();
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].line, e[0].message.as_str()),
        (2, "unterminated heredoc")
    );
}

#[test]
fn crlf_bom_and_invalid_utf8() {
    assert_eq!(
        dump("FROM a\r\nRUN echo \\\r\n  hi\r\n"),
        "(from \"a\")\n(run \"echo   hi\")\n"
    );
    let p = parse(b"\xEF\xBB\xBF# escape=`\nFROM a\nRUN x `\n y\n");
    assert!(p.ast.directives.bom);
    assert_eq!(p.ast.escape(), '`');
    assert_eq!(p.ast.dump(), "(from \"a\")\n(run \"x  y\")\n");
    let p = parse(b"FROM a\nRUN echo \xff\xfe\n");
    assert!(!p.has_errors());
    let w = &p.diagnostics[0];
    assert_eq!((w.severity, w.line, w.column), (Severity::Warning, 2, 10));
    assert_eq!(p.ast.nodes[1].args, ["echo \u{fffd}\u{fffd}"]);
}

#[test]
fn directives() {
    let p = parse(b"# syntax=docker/dockerfile:1\n# check=skip=all\n#escape=\\\nFROM a\n");
    let d = &p.ast.directives;
    assert_eq!(
        d.syntax.as_ref().map(|d| d.value.as_str()),
        Some("docker/dockerfile:1")
    );
    assert_eq!(
        d.check.as_ref().map(|d| (d.value.as_str(), d.line)),
        Some(("skip=all", 2))
    );
    assert_eq!(d.escape.as_ref().map(|d| d.line), Some(3));

    let p = parse(b"# escape=`\n# escape=\\\nFROM a\n");
    let e: Vec<_> = p.errors().map(|d| (d.line, d.message.clone())).collect();
    assert_eq!(
        e,
        [(2, "only one escape parser directive can be used".to_owned())]
    );

    let p = parse(b"# escape=x\nFROM a\n");
    assert_eq!(
        p.errors().next().map(|d| d.message.as_str()),
        Some("invalid escape token 'x' does not match ` or \\")
    );

    // Directive scanning stops at the first other line.
    let p = parse(b"# hello\n# escape=`\nFROM a\n");
    assert_eq!(p.ast.escape(), '\\');
    assert_eq!(p.ast.nodes[0].comments, ["hello", "escape=`"]);
}

#[test]
fn locations_and_every_error_reported() {
    let src = "FROM a\n  ENV PATH\nRUN [\"a\", 1]\nRUN ok\nLABEL x\n";
    let p = parse(src.as_bytes());
    let e: Vec<_> = p
        .errors()
        .map(|d| (d.line, d.column, d.message.as_str()))
        .collect();
    assert_eq!(
        e,
        [
            (2, 3, "ENV must have two arguments"),
            (
                3,
                1,
                "when using JSON array syntax, arrays must be comprised of strings only"
            ),
            (5, 1, "LABEL must have two arguments"),
        ]
    );
    // The valid instructions are still there.
    assert_eq!(p.ast.dump(), "(from \"a\")\n(run \"ok\")\n");
    assert_eq!(e.len(), 3);
    let d = p.errors().next().map(ToString::to_string);
    assert_eq!(d.as_deref(), Some("2:3: ENV must have two arguments"));
}

#[test]
fn empty_continuation_warns() {
    let p = parse(b"FROM a\nRUN foo \\\n\nbar\n");
    assert!(!p.has_errors());
    assert_eq!(p.ast.dump(), "(from \"a\")\n(run \"foo bar\")\n");
    let w = &p.diagnostics[0];
    assert_eq!((w.severity, w.line, w.end_line), (Severity::Warning, 2, 4));
}

#[test]
fn equals_form_without_equals_is_an_error() {
    let p = parse(b"FROM a\nENV a=b c\n");
    assert_eq!(
        p.errors().next().map(|d| d.message.as_str()),
        Some("Syntax error - can't find = in \"c\". Must be of the form: name=value")
    );
}
