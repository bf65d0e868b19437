//! The standalone sandbox worker executable: what a pool starts when the server binary does not re-execute itself.

fn main() -> std::process::ExitCode {
    sundial_sandbox::worker_main()
}
