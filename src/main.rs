//! The `chunkd` binary: parses the command line and hands each subcommand to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

// jemalloc: the server allocates and frees many 512 KiB buffers across threads, where the
// system allocator fragments and contends.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (jemalloc(3), `opt.thp`): its memory is backed by
/// transparent huge pages where the kernel can. An O_DIRECT read or write pins every page
/// of its buffer and hands the device one segment per page; a 128 KiB shard buffer on
/// 4 KiB pages is 32 pins and 32 segments, on a huge page one. Measured with
/// `tuning/nginx_vs_chunkd.sh` (ARCHITECTURE.md, "Huge pages"): 64 KiB range GETs 1.5x
/// faster. `_RJEM_MALLOC_CONF=thp:default` at run time restores the kernel's default.
///
/// `background_thread:true` (`opt.background_thread`): one jemalloc thread returns freed
/// heap pages to the kernel after their decay time (10 s) even when the node is idle —
/// without it, pages are purged only inside allocator calls on the thread that freed them,
/// so a core gone quiet after a burst kept its heap. Measured with `tuning/attacks.py`
/// (slow writer: 600 trickling 1 MiB PUTs): RSS 30 s after went from 185 to 167 MiB (34
/// before the attack); most of the rest is the I/O-buffer regions (`store::aligned`),
/// which keep their pages.
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_OPTIONS: &[u8; 34] = b"thp:always,background_thread:true\0";

/// A cache-tier node for encrypted, content-addressed chunks.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node: serve chunks over HTTP/1.1 and h2c from the flash store.
    ///
    /// With no arguments: listens on 127.0.0.1:7070 with five 1 GiB file devices under
    /// ./chunkd-data. Every setting is also a CHUNKD_* environment variable and a key of
    /// the --config TOML file; flags beat the environment, which beats the file.
    // Boxed: the settings are far larger than any other command's arguments.
    Serve(Box<chunkd::config::ServeConfig>),
    /// Cut an image into 512 KiB chunks, seal each, and write them with a manifest.
    ///
    /// Writes DIR/chunks/{id} for each distinct sealed chunk and DIR/manifest.json. The
    /// manifest holds the key of every chunk: keep it secret.
    Pack {
        /// The image file (or block device) to pack.
        image: PathBuf,
        /// Directory to write the chunks and manifest into (created if needed).
        #[arg(long)]
        out: PathBuf,
        /// Salt mixed into every chunk key, as hex (at most 64 bytes). The same image
        /// packed with the same salt gives the same chunk ids; another salt, other ids.
        #[arg(long, default_value = "", value_parser = parse_hex)]
        salt: HexBytes,
        /// Do not draw a progress bar.
        #[arg(long)]
        quiet: bool,
        /// Then push the packed image to this node, as `chunkd push DIR --node URL` does
        /// (several URLs, comma-separated, are tried in order; see `chunkd push --help`).
        #[arg(long = "node", value_name = "URL[,URL...]", value_delimiter = ',')]
        nodes: Vec<String>,
        /// With --node: the manifest's name (default: the name of the --out directory).
        #[arg(long, requires = "nodes")]
        name: Option<String>,
        /// With --node: the node's write token, sent as `Authorization: Bearer T`.
        #[arg(long, env = "CHUNKD_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Put a packed image on a node: its manifest, and only the chunks the node lacks.
    ///
    /// Sends PUT /v1/manifests/NAME with the chunk ids of DIR/manifest.json (never the
    /// keys), uploads the chunks the node answers are missing from DIR/chunks, in parallel,
    /// then puts the manifest again and fails if the node still lacks any. Pushing the same
    /// image again uploads nothing.
    Push {
        /// Directory written by `chunkd pack`.
        dir: PathBuf,
        #[command(flatten)]
        node: chunkd::client::NodeArgs,
        /// The manifest's name on the node: 1-128 of A-Z a-z 0-9 . _ -, not starting with
        /// '.'. Default: the directory's own name (`images/debian-12` → `debian-12`).
        #[arg(long)]
        name: Option<String>,
        /// Do not draw a progress bar (none is drawn when stderr is not a terminal).
        #[arg(long)]
        quiet: bool,
    },
    /// Rebuild an image, or a byte range of it, from a node, with the local manifest.
    ///
    /// The keys stay in DIR/manifest.json: the node only sees chunk ids. Every chunk is
    /// checked against its id and its key before its bytes are written; the output appears
    /// only when complete, and on any error nothing is left at the output path.
    Fetch {
        /// Directory written by `chunkd pack` (only its manifest.json is read).
        dir: PathBuf,
        #[command(flatten)]
        node: chunkd::client::NodeArgs,
        /// File to write the image (or the range) to (replaced if it exists).
        #[arg(long)]
        out: PathBuf,
        /// First byte of the image to fetch (default 0; bytes, or with K, M, G).
        #[arg(long, value_parser = chunkd::units::parse_size)]
        offset: Option<u64>,
        /// Bytes to fetch (default: to the end of the image; K, M, G accepted). The output
        /// holds exactly these bytes.
        #[arg(long, value_parser = chunkd::units::parse_size)]
        length: Option<u64>,
        /// Do not draw a progress bar (none is drawn when stderr is not a terminal).
        #[arg(long)]
        quiet: bool,
    },
    /// Rebuild an image from a packed directory, verifying every chunk's id and tag.
    ///
    /// The output appears only when the whole image verified; on any error nothing is
    /// left at the output path.
    Unpack {
        /// Directory written by `chunkd pack`.
        dir: PathBuf,
        /// File to write the image to (replaced if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a summary of a packed image: size, chunks, holes, dedup ratio.
    Inspect {
        /// Directory written by `chunkd pack`.
        dir: PathBuf,
    },
    /// Print the chunk id (BLAKE3-256, hex) of each file, as a node names its bytes.
    Id {
        /// Files to name; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Replay a request trace through chunkd's cache policy and LRU, FIFO and LRU-2, and
    /// print their miss ratios side by side.
    Sim(chunkd::sim::SimConfig),
    /// Measure chunkd against a peer (fio) on this machine; prints both and the ratio.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The flash store against fio: chunk reads at QD 1/8/32, 64 KiB range reads, reads
    /// with a device offline, and writes. Needs fio. Deletes and recreates --dir.
    Store {
        /// Scratch directory for the device files and catalog (deleted first).
        #[arg(long, default_value = "chunkd-bench")]
        dir: PathBuf,
        /// Number of file-backed devices.
        #[arg(long, default_value_t = 5)]
        devices: usize,
        /// Size of each device file (e.g. 1G, 512M).
        #[arg(long, default_value = "1G", value_parser = chunkd::units::parse_size)]
        device_size: u64,
        /// Chunk payload stored before the reads: the working set.
        #[arg(long, default_value = "1G", value_parser = chunkd::units::parse_size)]
        fill: u64,
        /// Seconds each measurement runs (each case runs `--rounds` times, alternating with
        /// its fio peer).
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Rounds per case; the report gives the median.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Cores (threads, one io_uring each) chunkd uses.
        #[arg(long, default_value_t = chunkd::cores::available())]
        cores: usize,
        /// PUTs in flight per core while writing.
        #[arg(long, default_value_t = 32)]
        puts_in_flight: usize,
    },
    /// Fill a store with many small chunks, then time reopening it and report index memory.
    /// Deletes and recreates --dir.
    Recovery {
        /// Scratch directory for the device files and catalog (deleted first).
        #[arg(long, default_value = "chunkd-bench")]
        dir: PathBuf,
        /// Chunks to store.
        #[arg(long, default_value_t = 100_000)]
        chunks: u64,
        /// Bytes per chunk (small, so many chunks fit).
        #[arg(long, default_value_t = 8)]
        chunk_bytes: usize,
        /// Number of file-backed devices.
        #[arg(long, default_value_t = 5)]
        devices: usize,
        /// Erasure scheme as K+M.
        #[arg(long, default_value = "4+1")]
        scheme: chunkd::erasure::Scheme,
    },
}

/// Bytes given as hex on the command line (a newtype: clap reads a bare `Vec` as a list).
#[derive(Clone)]
struct HexBytes(Vec<u8>);

fn parse_hex(text: &str) -> Result<HexBytes, String> {
    hex::decode(text)
        .map(HexBytes)
        .map_err(|e| format!("not hex: {e}"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHUNKD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = match parse_with_config_file() {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chunkd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line; for `serve --config FILE`, parses it again with the file's
/// settings added as flags wherever the command line and environment left a default.
fn parse_with_config_file() -> Result<Cli, clap::Error> {
    let command = Cli::command();
    let matches = command.clone().try_get_matches()?;
    let Some(("serve", serve)) = matches.subcommand() else {
        return Cli::from_arg_matches(&matches);
    };
    let Some(path) = serve.get_one::<PathBuf>("config") else {
        return Cli::from_arg_matches(&matches);
    };
    let serve_command = command
        .find_subcommand("serve")
        .expect("serve is a subcommand");
    let extra = chunkd::config::file_arguments(path, serve_command, serve)
        .map_err(|e| Cli::command().error(clap::error::ErrorKind::InvalidValue, e.to_string()))?;
    Cli::try_parse_from(std::env::args_os().chain(extra))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => {
            let metrics = chunkd::metrics::Metrics::install()?;
            chunkd::http::serve(*config, metrics)?;
        }
        Command::Pack {
            image,
            out,
            salt,
            quiet,
            nodes,
            name,
            token,
        } => {
            let options = chunkd::image::PackOptions {
                salt: salt.0,
                progress: !quiet,
            };
            let manifest = chunkd::image::pack(&image, &out, &options)
                .with_context(|| format!("packing {}", image.display()))?;
            println!(
                "packed {} bytes into {} chunks and {} holes in {}",
                manifest.image_len_bytes,
                manifest.chunks.len(),
                manifest.holes.len(),
                out.display()
            );
            if !nodes.is_empty() {
                let node = chunkd::client::NodeArgs {
                    nodes,
                    token,
                    parallel: chunkd::client::DEFAULT_PARALLEL,
                };
                push(&out, &node, name.as_deref(), quiet)?;
            }
        }
        Command::Push {
            dir,
            node,
            name,
            quiet,
        } => push(&dir, &node, name.as_deref(), quiet)?,
        Command::Fetch {
            dir,
            node,
            out,
            offset,
            length,
            quiet,
        } => {
            let options = chunkd::client::FetchOptions {
                offset,
                length,
                parallel: node.parallel,
                progress: !quiet,
            };
            let report = chunkd::client::fetch(&dir, &node.transport()?, &out, &options)
                .with_context(|| format!("fetching {} into {}", dir.display(), out.display()))?;
            println!(
                "fetched {} bytes (image bytes {}..{}) from {} chunks ({} bytes received) in {:.2} s into {}",
                report.range.len_bytes,
                report.range.offset_bytes,
                report.range.offset_bytes + report.range.len_bytes,
                report.chunks,
                report.received_bytes,
                report.elapsed.as_secs_f64(),
                out.display()
            );
        }
        Command::Unpack { dir, out } => {
            let manifest = chunkd::image::unpack(&dir, &out)
                .with_context(|| format!("unpacking {}", dir.display()))?;
            println!(
                "unpacked {} bytes to {}",
                manifest.image_len_bytes,
                out.display()
            );
        }
        Command::Inspect { dir } => {
            let summary = chunkd::image::inspect(&dir)
                .with_context(|| format!("inspecting {}", dir.display()))?;
            print!("{summary}");
        }
        Command::Id { files } => {
            for file in files {
                let mut hasher = blake3::Hasher::new();
                if file.as_os_str() == "-" {
                    std::io::copy(&mut std::io::stdin().lock(), &mut hasher)?;
                } else {
                    let mut input = std::fs::File::open(&file)
                        .with_context(|| format!("opening {}", file.display()))?;
                    std::io::copy(&mut input, &mut hasher)
                        .with_context(|| format!("reading {}", file.display()))?;
                }
                println!(
                    "{}",
                    chunkd::chunk::ChunkId::from_bytes(*hasher.finalize().as_bytes())
                );
            }
        }
        Command::Bench { which } => bench(which)?,
        Command::Sim(config) => {
            let report = chunkd::sim::run(&config)?;
            if config.json {
                println!("{}", report.json());
            } else {
                print!("{report}");
            }
        }
    }
    Ok(())
}

/// `chunkd push`, also the second half of `chunkd pack --node`.
fn push(
    dir: &std::path::Path,
    node: &chunkd::client::NodeArgs,
    name: Option<&str>,
    quiet: bool,
) -> anyhow::Result<()> {
    let options = chunkd::client::PushOptions {
        name: chunkd::client::manifest_name(name, dir)?,
        parallel: node.parallel,
        progress: !quiet,
    };
    let report = chunkd::client::push(dir, &node.transport()?, &options)
        .with_context(|| format!("pushing {}", dir.display()))?;
    println!(
        "pushed {} to {}: {} chunks, {} distinct, {} uploaded ({} bytes) in {:.2} s",
        report.name,
        report.node,
        report.chunks,
        report.distinct,
        report.uploaded,
        report.uploaded_bytes,
        report.elapsed.as_secs_f64()
    );
    Ok(())
}

fn bench(which: BenchCommand) -> Result<(), chunkd::bench::BenchError> {
    use chunkd::bench::{recovery, store};
    match which {
        BenchCommand::Store {
            dir,
            devices,
            device_size,
            fill,
            seconds,
            rounds,
            cores,
            puts_in_flight,
        } => store::run(&store::StoreBench {
            dir,
            devices,
            device_bytes: device_size,
            fill_bytes: fill,
            chunk_bytes: 512 * 1024,
            duration: std::time::Duration::from_secs(seconds),
            rounds,
            cores,
            puts_in_flight_per_core: puts_in_flight,
        }),
        BenchCommand::Recovery {
            dir,
            chunks,
            chunk_bytes,
            devices,
            scheme,
        } => recovery::run(&recovery::RecoveryBench {
            dir,
            chunks,
            chunk_bytes,
            devices,
            scheme,
            cores: chunkd::cores::available(),
            puts_in_flight_per_core: 64,
        }),
    }
}
