//! `switchyard-gen --manifest FILE|URL [--ts OUT.ts] [--python OUT.py] [--channel NAME]`

use std::process::ExitCode;

const USAGE: &str = "\
usage: switchyard-gen --manifest FILE|http://HOST:PORT/switchyard/manifest.json
                      [--ts OUT.ts] [--python OUT.py] [--channel NAME]

Writes a typed TypeScript client (--ts) and/or a typed Python client
(--python) for the channels of a Switchyard manifest. The manifest is a file
(Engine::write_manifest) or the URL a running engine serves it at when
Config::serve_manifest is on. --channel keeps one channel only.";

struct Args {
    manifest: String,
    ts: Option<String>,
    python: Option<String>,
    channel: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut manifest = None;
    let mut ts = None;
    let mut python = None;
    let mut channel = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let slot = match flag.as_str() {
            "--manifest" => &mut manifest,
            "--ts" => &mut ts,
            "--python" => &mut python,
            "--channel" => &mut channel,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument '{arg}'")),
        };
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or(format!("{flag} needs a value"))?,
        };
        *slot = Some(value);
    }
    let manifest = manifest.ok_or("--manifest is required")?;
    if ts.is_none() && python.is_none() {
        return Err("nothing to write: give --ts OUT.ts and/or --python OUT.py".into());
    }
    Ok(Args {
        manifest,
        ts,
        python,
        channel,
    })
}

fn run(args: Args) -> Result<(), String> {
    let value = switchyard_gen::load(&args.manifest)?;
    let manifest = switchyard_gen::select(&value, args.channel.as_deref())?;
    let write = |path: &str, text: String| {
        std::fs::write(path, text).map_err(|e| format!("cannot write {path}: {e}"))
    };
    if let Some(path) = &args.ts {
        write(path, switchyard_gen::typescript(&manifest))?;
        eprintln!("switchyard-gen: wrote {path}");
    }
    if let Some(path) = &args.python {
        write(path, switchyard_gen::python(&manifest))?;
        eprintln!("switchyard-gen: wrote {path}");
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-gen: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
