//! The stage graph (which stages the target needs, in which order, step
//! numbers) and the ordered replay of parallel stages' progress.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use kiln_dockerfile::instructions::{Dockerfile, Instruction, MountType};
use kiln_dockerfile::shell::Lexer;

use crate::args::StageArgs;
use crate::engine::{Base, BuildOptions, FromRef, Graph, find_stage, resolve_from};
use crate::error::{Error, Result};
use crate::progress::{Event, Progress};
use kiln_model::ContainerConfig;

/// Replays the events of parallel stages in file order: the first unfinished
/// stage streams live, later ones are buffered until their turn.
pub(crate) struct Ordered<'p> {
    inner: &'p dyn Progress,
    state: Mutex<OrderedState>,
}

struct OrderedState {
    order: Vec<usize>,
    current: usize,
    buffers: BTreeMap<usize, Vec<Event>>,
    done: BTreeSet<usize>,
}

impl<'p> Ordered<'p> {
    pub(crate) fn new(inner: &'p dyn Progress, order: &[usize]) -> Self {
        Ordered {
            inner,
            state: Mutex::new(OrderedState {
                order: order.to_vec(),
                current: 0,
                buffers: BTreeMap::new(),
                done: BTreeSet::new(),
            }),
        }
    }

    fn emit(&self, stage: usize, event: Event) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.order.get(st.current) == Some(&stage) {
            self.inner.event(event);
        } else {
            st.buffers.entry(stage).or_default().push(event);
        }
    }

    pub(crate) fn finish(&self, stage: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.done.insert(stage);
        while let Some(&cur) = st.order.get(st.current) {
            if !st.done.contains(&cur) {
                break;
            }
            st.current += 1;
            if let Some(&next) = st.order.get(st.current) {
                for e in st.buffers.remove(&next).unwrap_or_default() {
                    self.inner.event(e);
                }
            }
        }
    }
}

pub(crate) struct StageSink<'o, 'p> {
    pub(crate) ordered: &'o Ordered<'p>,
    pub(crate) stage: usize,
}

impl Progress for StageSink<'_, '_> {
    fn event(&self, event: Event) {
        self.ordered.emit(self.stage, event);
    }
}

/// Works out which stages the target needs and in which order to build them.
pub(crate) fn plan_graph(
    df: &Dockerfile,
    global: &BTreeMap<String, String>,
    opts: &BuildOptions,
) -> Result<Graph> {
    let env: Vec<(String, String)> = global.clone().into_iter().collect();
    let lex = Lexer::new(df.escape);
    let expand = |w: &str, line: usize| {
        lex.process_word(w, &env[..]).map_err(|e| Error::Expand {
            line,
            word: w.to_string(),
            message: e.kind.to_string(),
        })
    };
    let mut bases = Vec::new();
    let mut deps = Vec::new();
    for (i, stage) in df.stages.iter().enumerate() {
        let base = expand(&stage.base, stage.source.start_line)?;
        let base = if base.eq_ignore_ascii_case("scratch") {
            Base::Scratch
        } else if let Some(j) = find_stage(df, &base, i) {
            Base::Stage(j)
        } else {
            Base::Image(base)
        };
        let mut d = from_stages(df, i, global, opts)?;
        if let Base::Stage(j) = base {
            d.insert(j);
        }
        bases.push(base);
        deps.push(d);
    }
    let target = match &opts.target {
        None => df.stages.len() - 1,
        Some(t) => {
            find_stage(df, t, df.stages.len()).ok_or_else(|| Error::UnknownTarget(t.clone()))?
        }
    };
    let mut sorted = build_order(df, target, &deps)?;
    // Number steps in file order over the stages being built.
    sorted.sort();
    wait_for_identical_stages(df, &bases, &sorted, &mut deps);
    let mut first_step = BTreeMap::new();
    let mut n = 1;
    for &i in &sorted {
        first_step.insert(i, n);
        n += 1 + df.stages[i].instructions.len();
    }
    let mut total = n - 1;
    if !opts.labels.is_empty() {
        total += 1;
    }
    Ok(Graph {
        bases,
        deps,
        order: sorted,
        target,
        first_step,
        total,
    })
}

/// The earlier stages that stage `i` reads from: `COPY --from` and
/// `RUN --mount=from=` values, which may use the stage's ARGs (their ENV
/// is not known yet).
fn from_stages(
    df: &Dockerfile,
    i: usize,
    global: &BTreeMap<String, String>,
    opts: &BuildOptions,
) -> Result<BTreeSet<usize>> {
    let lex = Lexer::new(df.escape);
    let stage = &df.stages[i];
    let mut d = BTreeSet::new();
    let mut args = StageArgs::new(global.clone(), opts.build_args.clone());
    for inst in &stage.instructions {
        if let Instruction::Arg(a) = inst {
            for def in &a.args {
                let env = args.expansion_env(&ContainerConfig::default());
                let default = match &def.default {
                    Some(d) => Some(lex.process_word(d, &env[..]).map_err(|e| Error::Expand {
                        line: a.source.start_line,
                        word: d.clone(),
                        message: e.kind.to_string(),
                    })?),
                    None => None,
                };
                args.declare(&def.name, default);
            }
        }
        let froms: Vec<&String> = match inst {
            Instruction::Copy(c) => c.from.iter().collect(),
            Instruction::Run(r) => r
                .mounts
                .iter()
                .filter(|m| matches!(m.kind, MountType::Bind | MountType::Cache))
                .filter_map(|m| m.from.as_ref())
                .collect(),
            _ => Vec::new(),
        };
        for f in froms {
            let env = args.expansion_env(&ContainerConfig::default());
            let v = lex.process_word(f, &env[..]).map_err(|e| Error::Expand {
                line: inst.source().start_line,
                word: f.clone(),
                message: e.kind.to_string(),
            })?;
            if let FromRef::Stage(j) = resolve_from(df, &v, i) {
                d.insert(j);
            }
        }
    }
    Ok(d)
}

/// The stages `target` needs, depth-first from it, dependencies first
/// (they always precede in the file); a stage depending on itself or a
/// later one is a cycle.
fn build_order(df: &Dockerfile, target: usize, deps: &[BTreeSet<usize>]) -> Result<Vec<usize>> {
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![(target, false)];
    while let Some((i, expanded)) = stack.pop() {
        if expanded {
            if seen.insert(i) {
                order.push(i);
            }
            continue;
        }
        if seen.contains(&i) {
            continue;
        }
        stack.push((i, true));
        for &d in deps[i].iter().rev() {
            if d >= i {
                return Err(Error::Cycle(
                    df.stages[i].name.clone().unwrap_or_else(|| i.to_string()),
                ));
            }
            stack.push((d, false));
        }
    }
    Ok(order)
}

/// Two identical stages (same base, same instructions as written): the
/// later one waits for the earlier, so that its steps hit the cache the
/// earlier one filled, as in Docker's sequential builds.
fn wait_for_identical_stages(
    df: &Dockerfile,
    bases: &[Base],
    sorted: &[usize],
    deps: &mut [BTreeSet<usize>],
) {
    for (n, &i) in sorted.iter().enumerate() {
        let same = sorted[..n].iter().copied().find(|&j| {
            bases[j] == bases[i]
                && df.stages[j].platform == df.stages[i].platform
                && df.stages[j].instructions.len() == df.stages[i].instructions.len()
                && df.stages[j]
                    .instructions
                    .iter()
                    .zip(&df.stages[i].instructions)
                    .all(|(a, b)| a.source().original == b.source().original)
        });
        if let Some(j) = same {
            deps[i].insert(j);
        }
    }
}
