//! The `chunkd` binary: parses the command line and hands each subcommand to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

// jemalloc: the server allocates and frees many 512 KiB buffers across threads, where the
// system allocator fragments and contends.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A cache-tier node for encrypted, content-addressed chunks.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chunkd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Pack {
            image,
            out,
            salt,
            quiet,
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
    }
    Ok(())
}
