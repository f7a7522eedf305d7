#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use creativeflow::commands::{self, Answer};
use creativeflow::config::Config;
use creativeflow::control::{self, Request};
use creativeflow::mailer::LogMailer;
use creativeflow::startup::Application;
use storage::Store;

/// mimalloc instead of glibc's malloc: in a profile of the create path (benches/generation,
/// `perf record -e cpu-clock`) glibc's allocator took ~12 % of the process's CPU across the
/// HTTP, actor and writer threads; with mimalloc the same bench accepted ~11 % more creates for
/// ~10 % less server CPU per create (README, Benchmarks).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "creativeflow",
    version,
    about = "CreativeFlow Core: the business backend of CreativeFlow AI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (configuration from CREATIVEFLOW_* variables).
    Serve,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Check every invariant of the store; exits 1 and names each violation.
    Verify,
    /// Write a consistent, verified copy of the store, while the server may be running.
    Backup {
        #[arg(long)]
        out: PathBuf,
    },
    /// Move a store between the embedded engine and PostgreSQL, verified (server stopped).
    Copy {
        #[command(subcommand)]
        direction: CopyCommand,
    },
}

#[derive(Subcommand)]
enum CopyCommand {
    /// The embedded store in CREATIVEFLOW_DATA_DIR into the configured, empty database.
    ToPostgres,
    /// The configured database into a new embedded store in --out.
    FromPostgres {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account (bootstrap the first admin with --role admin).
    Create {
        #[arg(long)]
        email: String,
        /// Visible to `ps` and kept in shell history: prefer --password-stdin.
        #[arg(
            long,
            conflicts_with = "password_stdin",
            required_unless_present = "password_stdin"
        )]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, value_parser = ["admin", "agent", "user"])]
        role: String,
        #[arg(long)]
        name: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    creativeflow::telemetry::init();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve => serve(config),
        Command::Verify => finish(offline_or_server(&config, Request::Verify, |store, p| {
            commands::verify(store, p)
        })),
        Command::Backup { out } => {
            let request = Request::Backup {
                out: absolute(&out),
            };
            finish(offline_or_server(&config, request, |store, p| {
                commands::backup(store, &out, p)
            }))
        }
        Command::Copy { direction } => {
            let mut progress = |line: &str| eprintln!("{line}");
            finish(match direction {
                CopyCommand::ToPostgres => commands::copy_to_postgres(&config, &mut progress),
                CopyCommand::FromPostgres { out } => {
                    commands::copy_from_postgres(&config, &out, &mut progress)
                }
            })
        }
        Command::User {
            command:
                UserCommand::Create {
                    email,
                    password,
                    password_stdin,
                    role,
                    name,
                },
        } => {
            let password = match password_from(password, password_stdin) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("user create: {e}");
                    return ExitCode::from(2);
                }
            };
            let args =
                match commands::parse_user_create(&email, password.clone(), name.as_deref(), &role)
                {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("user create: {e}");
                        return ExitCode::from(2);
                    }
                };
            let grant = config.file.credits.signup_grant;
            let request = Request::UserCreate {
                email,
                password,
                name: name.unwrap_or_else(|| {
                    args.email
                        .as_str()
                        .split('@')
                        .next()
                        .unwrap_or("user")
                        .to_string()
                }),
                role,
            };
            finish(offline_or_server(&config, request, move |store, _| {
                commands::user_create_blocking(store, args, grant)
            }))
        }
    }
}

/// The password from the flag, or the first line of standard input (without its line ending).
fn password_from(flag: Option<String>, stdin: bool) -> Result<String, String> {
    match (flag, stdin) {
        (Some(p), false) => Ok(p),
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
            Ok(line.trim_end_matches(['\r', '\n']).to_string())
        }
        _ => Err("give exactly one of --password and --password-stdin".into()),
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Asks a running server through its control socket; with none running, opens the store.
fn offline_or_server(
    config: &Config,
    request: Request,
    offline: impl FnOnce(&Store, &mut dyn FnMut(&str)) -> Answer,
) -> Answer {
    let mut progress = |line: &str| eprintln!("{line}");
    match control::call(&config.data_dir, &request, &mut progress) {
        Ok(Some(answer)) => return answer,
        Ok(None) => {}
        Err(e) => {
            return (
                false,
                vec![format!("cannot talk to the running server: {e}")],
            )
        }
    }
    match config.open_store() {
        Ok(store) => {
            let answer = offline(&store, &mut progress);
            store.shutdown();
            answer
        }
        Err(e) => (false, vec![format!("cannot open the store: {e}")]),
    }
}

fn finish((ok, lines): Answer) -> ExitCode {
    for l in lines {
        println!("{l}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn serve(config: Config) -> ExitCode {
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move {
        let app = Application::build(config, Arc::new(LogMailer))
            .await
            .map_err(|e| e.to_string())?;
        app.run_until_stopped().await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("creativeflow: {e}");
            ExitCode::FAILURE
        }
    }
}
