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
