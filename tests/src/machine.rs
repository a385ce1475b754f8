//! What a bench prints of the machine it ran on (cores, commit), so that
//! every figure carries where it came from.

/// A command's trimmed output, or why it could not run.
pub fn shell(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|error| format!("({program}: {error})"))
}

/// The lines every bench opens with: what it measures, the command as
/// typed, the berth binary measured and its commit, and the machine.
pub fn print_header(title: &str, berth: &std::path::Path) {
    let command: Vec<String> = std::env::args().collect();
    println!("{title}");
    println!("command:  {}", command.join(" "));
    println!("berth:    {} (commit {})", berth.display(), shell("git", &["describe", "--always", "--dirty"]));
    println!("machine:  {}", describe());
}

/// The machine line every bench prints: cores, CPU model, and the load
/// average before its runs.
pub fn describe() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("nproc {}, {}, load average {} (before the runs)", shell("nproc", &[]), cpu_model(), load.join(" "))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "CPU model unknown".to_owned())
}
