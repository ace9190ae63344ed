//! Which device nodes a container may open or create: Docker's default
//! list plus the spec's rules, written as v1 `devices.allow`/`devices.deny`
//! lines or compiled into a `BPF_PROG_TYPE_CGROUP_DEVICE` program for
//! cgroup v2, which has no devices files.
//!
//! Rules apply in order and the last one matching a request decides
//! (v1's semantics for a list that starts by denying everything). An allow
//! rule matches when it grants every access asked for; a deny rule when it
//! refuses any of them. Nothing matching: denied.

use kiln_sys::bpf::Insn;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

/// Access bits, as the kernel passes them to a device program
/// (`BPF_DEVCG_ACC_*`).
pub(crate) const MKNOD: u8 = 1;
pub(crate) const READ: u8 = 2;
pub(crate) const WRITE: u8 = 4;
const ALL_ACCESS: u8 = MKNOD | READ | WRITE;

/// A kind of device node (`BPF_DEVCG_DEV_*` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Block = 1,
    Char = 2,
}

/// One rule: `kind` `None` is every kind (and then every number), numbers
/// `None` are wildcards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    pub(crate) allow: bool,
    pub(crate) kind: Option<Kind>,
    pub(crate) major: Option<u32>,
    pub(crate) minor: Option<u32>,
    pub(crate) access: u8,
}

const fn rule(
    allow: bool,
    kind: Option<Kind>,
    major: Option<u32>,
    minor: Option<u32>,
    access: u8,
) -> DeviceRule {
    DeviceRule {
        allow,
        kind,
        major,
        minor,
        access,
    }
}

const fn allow_char(major: u32, minor: Option<u32>) -> DeviceRule {
    rule(true, Some(Kind::Char), Some(major), minor, ALL_ACCESS)
}

/// Docker's default device access: everything denied, then `mknod` of any
/// node, and use of `null`, `zero`, `full`, `random`, `urandom`, `tty`,
/// `console`, `ptmx`, the pseudo-terminals (`136:*`) and `net/tun`.
pub(crate) const DEFAULT_RULES: [DeviceRule; 13] = [
    rule(false, None, None, None, ALL_ACCESS),
    rule(true, Some(Kind::Char), None, None, MKNOD),
    rule(true, Some(Kind::Block), None, None, MKNOD),
    allow_char(1, Some(3)),
    allow_char(1, Some(5)),
    allow_char(1, Some(7)),
    allow_char(1, Some(8)),
    allow_char(1, Some(9)),
    allow_char(5, Some(0)),
    allow_char(5, Some(1)),
    allow_char(5, Some(2)),
    allow_char(136, None),
    allow_char(10, Some(200)),
];

fn access_bits(access: Option<&str>) -> u8 {
    match access.filter(|a| !a.is_empty()) {
        None => ALL_ACCESS,
        Some(a) => a.chars().fold(0, |bits, c| {
            bits | match c {
                'r' => READ,
                'w' => WRITE,
                'm' => MKNOD,
                _ => 0,
            }
        }),
    }
}

fn number(n: Option<i64>) -> Option<u32> {
    n.and_then(|n| u32::try_from(n).ok())
}

/// A spec rule as kiln applies it; `None` for rules about no device node
/// (`p`, FIFOs, which no device cgroup checks).
fn from_spec(d: &LinuxDeviceCgroup) -> Option<DeviceRule> {
    let kind = match d.typ().unwrap_or_default() {
        LinuxDeviceType::A => None,
        LinuxDeviceType::B => Some(Kind::Block),
        LinuxDeviceType::C | LinuxDeviceType::U => Some(Kind::Char),
        LinuxDeviceType::P => return None,
    };
    let all = kind.is_none();
    Some(DeviceRule {
        allow: d.allow(),
        kind,
        major: if all { None } else { number(d.major()) },
        minor: if all { None } else { number(d.minor()) },
        access: access_bits(d.access().as_deref()),
    })
}

/// The rules for a container: Docker's defaults, then the spec's
/// (`--device`, `--privileged`'s allow-all). A deny-all first rule in the
/// spec is the one the defaults start with (Docker writes it there) and is
/// not applied a second time.
pub(crate) fn effective_rules(resources: Option<&LinuxResources>) -> Vec<DeviceRule> {
    let mut rules = DEFAULT_RULES.to_vec();
    let spec: Vec<DeviceRule> = resources
        .and_then(|r| r.devices().as_ref())
        .map(|list| list.iter().filter_map(from_spec).collect())
        .unwrap_or_default();
    let skip = usize::from(spec.first() == Some(&DEFAULT_RULES[0]));
    rules.extend(spec.into_iter().skip(skip));
    rules
}

/// The v1 file (`devices.allow` or `devices.deny`) and line for a rule.
pub(crate) fn v1_line(r: &DeviceRule) -> (&'static str, String) {
    let file = if r.allow {
        "devices.allow"
    } else {
        "devices.deny"
    };
    let access: String = [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
        .iter()
        .filter(|(bit, _)| r.access & bit != 0)
        .map(|(_, c)| *c)
        .collect();
    let Some(kind) = r.kind else {
        return (file, "a".to_string());
    };
    let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
    let k = if kind == Kind::Block { 'b' } else { 'c' };
    (
        file,
        format!("{k} {}:{} {access}", num(r.major), num(r.minor)),
    )
}

// eBPF opcodes used below (see the kernel's `bpf_common.h` and `bpf.h`).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// Registers: r1 the context (`struct bpf_cgroup_dev_ctx`: u32
// access_type = access << 16 | type, u32 major, u32 minor), then
// r2 type, r3 access, r4 major, r5 minor; r1 is scratch once they are read.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

/// A jump within a rule's block that leaves it when the request does not
/// match (its offset is set once the block's length is known).
struct Block {
    insns: Vec<Insn>,
    exits: Vec<usize>,
}

impl Block {
    fn skip_unless(&mut self, code: u8, reg: u8, imm: i32) {
        self.exits.push(self.insns.len());
        self.insns.push(Insn::new(code, reg, 0, 0, imm));
    }
}

fn block(r: &DeviceRule) -> Block {
    let mut b = Block {
        insns: Vec::new(),
        exits: Vec::new(),
    };
    if let Some(kind) = r.kind {
        b.skip_unless(JNE_K, R2, kind as i32);
    }
    if r.allow {
        // Every access asked for must be granted: request & !granted == 0.
        if r.access != ALL_ACCESS {
            b.insns.push(Insn::new(MOV32_X, R1, R3, 0, 0));
            b.insns
                .push(Insn::new(AND32_K, R1, 0, 0, !u32::from(r.access) as i32));
            b.skip_unless(JNE_K, R1, 0);
        }
    } else {
        // Any access asked for that the rule refuses: request & refused != 0.
        b.insns.push(Insn::new(MOV32_X, R1, R3, 0, 0));
        b.insns
            .push(Insn::new(AND32_K, R1, 0, 0, i32::from(r.access)));
        b.skip_unless(JEQ_K, R1, 0);
    }
    if r.kind.is_some() {
        if let Some(m) = r.major {
            b.skip_unless(JNE_K, R4, m as i32);
        }
        if let Some(m) = r.minor {
            b.skip_unless(JNE_K, R5, m as i32);
        }
    }
    b.insns
        .push(Insn::new(MOV64_K, R0, 0, 0, i32::from(r.allow)));
    b.insns.push(Insn::new(EXIT, 0, 0, 0, 0));
    let len = b.insns.len();
    for &i in &b.exits {
        // Jumps count from the next instruction; every block is a few
        // instructions long, so the distance always fits.
        b.insns[i].off = (len - i - 1) as i16;
    }
    b
}

/// The device program for `rules`: returns 1 (allow) or 0 (deny) for the
/// kernel's `(type, access, major, minor)` request, the last matching rule
/// deciding, nothing matching denying.
pub(crate) fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut out = vec![
        Insn::new(LDX_W, R2, R1, 0, 0),
        Insn::new(AND32_K, R2, 0, 0, 0xffff),
        Insn::new(LDX_W, R3, R1, 0, 0),
        Insn::new(RSH32_K, R3, 0, 0, 16),
        Insn::new(LDX_W, R4, R1, 4, 0),
        Insn::new(LDX_W, R5, R1, 8, 0),
    ];
    for r in rules.iter().rev() {
        let b = block(r);
        let unconditional = b.exits.is_empty();
        out.extend(b.insns);
        if unconditional {
            // Every request stops here: anything after would be code the
            // verifier refuses as unreachable.
            return out;
        }
    }
    out.push(Insn::new(MOV64_K, R0, 0, 0, 0));
    out.push(Insn::new(EXIT, 0, 0, 0, 0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a device program on one request: an interpreter for exactly
    /// the instructions `program` emits (anything else fails the test).
    fn run(prog: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0x0f) as usize, (i.regs >> 4) as usize);
            let imm = i.imm as i64 as u64;
            pc += 1;
            match i.code {
                LDX_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[(i.off / 4) as usize]);
                }
                AND32_K => r[dst] = u64::from((r[dst] as u32) & (i.imm as u32)),
                RSH32_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
                MOV32_X => r[dst] = u64::from(r[src] as u32),
                MOV64_K => r[dst] = imm,
                JEQ_K if r[dst] == imm => pc += i.off as usize,
                JNE_K if r[dst] != imm => pc += i.off as usize,
                JEQ_K | JNE_K => {}
                EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
        panic!("no exit")
    }

    /// The rules' meaning, evaluated directly.
    fn reference(rules: &[DeviceRule], kind: Kind, access: u8, major: u32, minor: u32) -> u64 {
        for r in rules.iter().rev() {
            let dev = r.kind.is_none()
                || (r.kind == Some(kind)
                    && r.major.is_none_or(|m| m == major)
                    && r.minor.is_none_or(|m| m == minor));
            let acc = if r.allow {
                access & !r.access == 0
            } else {
                access & r.access != 0
            };
            if dev && acc {
                return u64::from(r.allow);
            }
        }
        0
    }

    fn check_all(rules: &[DeviceRule]) {
        let prog = program(rules);
        for kind in [Kind::Block, Kind::Char] {
            for access in 1..=ALL_ACCESS {
                for (major, minor) in [
                    (1, 3),
                    (1, 1),
                    (8, 0),
                    (136, 4),
                    (5, 1),
                    (10, 200),
                    (254, 0),
                    (7, 3),
                ] {
                    assert_eq!(
                        run(&prog, kind as u32, u32::from(access), major, minor),
                        reference(rules, kind, access, major, minor),
                        "{kind:?} {major}:{minor} access {access:#b} with {rules:?}"
                    );
                }
            }
        }
    }

    const R: u8 = READ;
    const W: u8 = WRITE;
    const M: u8 = MKNOD;

    #[test]
    fn default_rules_allow_docker_devices_and_mknod_only() {
        let prog = program(&DEFAULT_RULES);
        let c = Kind::Char as u32;
        let b = Kind::Block as u32;
        let rw = u32::from(R | W);
        for (maj, min) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 1),
            (5, 2),
            (136, 0),
            (136, 77),
            (10, 200),
        ] {
            assert_eq!(run(&prog, c, rw, maj, min), 1, "c {maj}:{min} rw");
        }
        assert_eq!(run(&prog, c, rw, 1, 1), 0, "/dev/mem");
        assert_eq!(run(&prog, c, u32::from(W), 1, 11), 0, "/dev/kmsg");
        assert_eq!(run(&prog, b, u32::from(R), 8, 0), 0, "a disk");
        assert_eq!(
            run(&prog, b, u32::from(M), 8, 0),
            1,
            "mknod of a disk is allowed"
        );
        assert_eq!(
            run(&prog, c, u32::from(M | R), 1, 1),
            0,
            "mknod and read at once"
        );
        check_all(&DEFAULT_RULES);
    }

    #[test]
    fn spec_rules_follow_the_defaults_and_the_last_match_wins() {
        let dev =
            |allow, kind, major, minor, access| rule(allow, Some(kind), Some(major), minor, access);
        let spec: LinuxResources = serde_json::from_value(serde_json::json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "b", "major": 8, "minor": 0, "access": "rw"},
            {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"},
            {"allow": true, "type": "p", "access": "rwm"},
        ]}))
        .expect("resources");
        let rules = effective_rules(Some(&spec));
        assert_eq!(
            rules.len(),
            DEFAULT_RULES.len() + 2,
            "leading deny-all and FIFO rule dropped"
        );
        assert_eq!(rules[13], dev(true, Kind::Block, 8, Some(0), R | W));
        let prog = program(&rules);
        assert_eq!(run(&prog, 1, u32::from(R), 8, 0), 1, "--device /dev/sda");
        assert_eq!(run(&prog, 1, u32::from(R), 8, 1), 0, "only that disk");
        assert_eq!(run(&prog, 2, u32::from(R), 1, 3), 1, "null still readable");
        assert_eq!(
            run(&prog, 2, u32::from(W), 1, 3),
            0,
            "null no longer writable"
        );
        assert_eq!(
            run(&prog, 2, u32::from(R | W), 1, 3),
            0,
            "nor opened read-write"
        );
        check_all(&rules);
        check_all(&[
            dev(true, Kind::Char, 1, None, R),
            dev(false, Kind::Char, 1, Some(3), M),
        ]);
        check_all(&[
            rule(false, None, None, None, W),
            dev(true, Kind::Block, 7, Some(3), R | W),
        ]);
        check_all(&[]);
    }

    #[test]
    fn allow_all_is_one_unconditional_block() {
        let privileged: LinuxResources = serde_json::from_value(
            serde_json::json!({"devices": [{"allow": true, "access": "rwm"}]}),
        )
        .expect("resources");
        let rules = effective_rules(Some(&privileged));
        let prog = program(&rules);
        assert_eq!(prog.len(), 8, "six loads, r0 = 1, exit: {prog:?}");
        assert_eq!(run(&prog, 1, 7, 8, 0), 1);
        check_all(&rules);
    }

    #[test]
    fn v1_lines_match_dockers_files() {
        let lines: Vec<(&str, String)> = DEFAULT_RULES.iter().map(v1_line).collect();
        assert_eq!(lines[0], ("devices.deny", "a".to_string()));
        assert_eq!(lines[1], ("devices.allow", "c *:* m".to_string()));
        assert_eq!(lines[2], ("devices.allow", "b *:* m".to_string()));
        assert_eq!(lines[3], ("devices.allow", "c 1:3 rwm".to_string()));
        assert_eq!(lines[11], ("devices.allow", "c 136:* rwm".to_string()));
    }
}
