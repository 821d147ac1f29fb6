//! One ONNX network, ready to run: the ONNX Runtime session on its device (CPU, CUDA
//! with the CPU as fallback), its threads, the tensor checks of the contract, and one
//! batch of tiles through it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use ort::session::Session;
use ort::value::TensorRef;

use crate::contract::{NetInfo, Role};
use crate::error::{Error, Result};

/// The ONNX Runtime execution provider a network runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// ONNX Runtime's own CPU kernels.
    Default,
    /// Intel's OpenVINO on the CPU (the `onnxruntime-openvino` build).
    OpenVino,
    Cuda,
}

crate::vocabulary!(Provider, "provider", [Provider::Default => "default", Provider::OpenVino => "openvino", Provider::Cuda => "cuda"]);

/// Where inference runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// CUDA when it starts, else the CPU.
    Auto,
    Cpu,
    /// CUDA or an error.
    Cuda,
}

crate::vocabulary!(Device, "device", [Device::Auto => "auto", Device::Cpu => "cpu", Device::Cuda => "cuda" | "gpu"]);

/// Arithmetic of the networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// int8 where it pays (OpenVINO on an x86-64 CPU with AVX2, see [`int8_pays`]) for a
    /// model that has an int8 version (the embedded default); fp32 everywhere else.
    #[default]
    Auto,
    /// IEEE fp32 everywhere: the same labels on the CPU and the GPU.
    Fp32,
    /// TensorFloat-32 tensor cores for convolutions (10-bit mantissa inputs, fp32
    /// accumulation) on NVIDIA GPUs since Ampere: faster, probabilities differ slightly.
    /// The CPU computes in fp32.
    Tf32,
    /// The model's int8 (QDQ) version on the CPU: weights per channel, activations per
    /// tensor, calibrated on training volumes; labels differ slightly from fp32 (README).
    Int8,
}

crate::vocabulary!(Precision, "precision", [Precision::Auto => "auto", Precision::Fp32 => "fp32", Precision::Tf32 => "tf32", Precision::Int8 => "int8"]);

/// Whether int8 pays on this CPU under OpenVINO: x86-64 with AVX2 (its int8 kernels; VNNI,
/// where present, speeds them further). Measured on an AVX2-only EPYC (2 cores): network
/// 1.6-1.8x faster than fp32; the issue's AVX-512 VNNI machine: 2.7x.
pub fn int8_pays() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A model's ONNX bytes: fp32, and its int8 version when it has one.
#[derive(Clone, Copy, Debug)]
pub struct ModelBytes<'a> {
    pub fp32: &'a [u8],
    pub int8: Option<&'a [u8]>,
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub device: Device,
    pub device_id: i32,
    /// Inference threads; 0 = all cores.
    pub num_threads: usize,
    pub precision: Precision,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { device: Device::Auto, device_id: 0, num_threads: 0, precision: Precision::Auto }
    }
}

/// Most inference threads one may ask for (ONNX Runtime crashes far above the core count).
pub const MAX_THREADS: usize = 1024;

/// Tiles sent to a GPU in one run are capped at this many voxels in all (about 3 GB of
/// activations for the default model): enough to fill an H100, far below its memory.
const GPU_BATCH_VOXELS: usize = 20_000_000;
/// At most this many tiles per run.
pub(crate) const MAX_BATCH: usize = 16;

/// How to read a probability output.
#[derive(Clone, Debug)]
struct Output {
    name: String,
}

/// One ONNX network, ready to run. Sessions are not re-entrant in `ort`, so runs
/// on the same network are serialised; different models run in parallel.
pub struct Network {
    session: Mutex<Session>,
    pub info: NetInfo,
    input: String,
    prob: Output,
    centre: Option<Output>,
    pub device_used: Device,
    /// Which ONNX Runtime provider runs it.
    pub provider: Provider,
    /// Why `Device::Auto` runs on the CPU (or the CPU without OpenVINO), when it does.
    pub fallback: Option<String>,
    /// The arithmetic it runs in: `Fp32`, `Tf32` (on CUDA) or `Int8`, never `Auto`.
    pub precision_used: Precision,
}

fn model_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Model(format!("{what}: {e}"))
}

impl Network {
    pub fn from_file(path: &Path, opts: &LoadOptions) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, &path.display().to_string(), opts)
    }

    pub fn from_bytes(bytes: &[u8], name: &str, opts: &LoadOptions) -> Result<Self> {
        Self::from_variants(ModelBytes { fp32: bytes, int8: None }, name, opts)
    }

    /// A model with its variants; `opts.precision` and the provider that starts choose one:
    /// see [`Precision`].
    pub fn from_variants(variants: ModelBytes<'_>, name: &str, opts: &LoadOptions) -> Result<Self> {
        if variants.fp32.is_empty() {
            return Err(Error::Model(format!("{name}: empty file")));
        }
        // the variant a provider runs, decided here only
        // `auto_int8`: whether `auto` may pick int8 (not when retrying OpenVINO in fp32)
        let variant = |ep: Provider, auto_int8: bool| -> Result<(&[u8], Precision)> {
            match (opts.precision, ep, variants.int8) {
                (Precision::Int8, Provider::Cuda, _) => {
                    Err(Error::invalid("precision int8 runs on the CPU; on a GPU use fp32 or tf32 (or device cpu)"))
                }
                (Precision::Int8, _, Some(b)) => Ok((b, Precision::Int8)),
                (Precision::Int8, _, None) => Err(Error::invalid(format!(
                    "{name} has no int8 version (the embedded default has one; quantize yours with \
                     tools/quantize_int8.py and load that file with precision auto or fp32)"
                ))),
                (Precision::Auto, Provider::OpenVino, Some(b)) if auto_int8 && int8_pays() => Ok((b, Precision::Int8)),
                (Precision::Tf32, Provider::Cuda, _) => Ok((variants.fp32, Precision::Tf32)),
                _ => Ok((variants.fp32, Precision::Fp32)),
            }
        };
        let (env, providers) = crate::runtime::environment_for(opts.device)?;
        if opts.num_threads > MAX_THREADS {
            return Err(Error::invalid(format!("{} inference threads asked for; at most {MAX_THREADS} (0 = all cores)", opts.num_threads)));
        }
        let threads = if opts.num_threads == 0 { num_cpus() } else { opts.num_threads };
        let build_as = |ep: Provider, auto_int8: bool| -> Result<(Session, Precision)> {
            let (bytes, precision) = variant(ep, auto_int8)?;
            let mut b = Session::builder(env).map_err(|e| model_err(name, e))?;
            b = b.with_intra_threads(threads).map_err(|e| model_err(name, e))?;
            if ep == Provider::OpenVino {
                // OpenVINO's CPU plugin compiles the network for this CPU (AVX-512, VNNI, ...);
                // fp32 precision keeps its outputs those of the default provider
                let mut ov = ort::ep::OpenVINO::default().with_device_type("CPU").with_precision("FP32").with_num_threads(threads);
                if threads < num_cpus() {
                    // OpenVINO pins its threads to cores, the same first cores in every
                    // process: two 1-thread processes (Dask workers) would share one core and
                    // leave the other idle (measured: each at half speed). A process given
                    // part of the machine leaves placement to the kernel.
                    use ort::ep::ArbitrarilyConfigurableExecutionProvider;
                    ov = ov.with_arbitrary_config("load_config", r#"{"CPU":{"ENABLE_CPU_PINNING":"NO"}}"#);
                }
                let ov = ov.build().error_on_failure();
                b = b.with_execution_providers([ov]).map_err(|e| Error::Model(format!("OpenVINO could not start: {e}")))?;
            }
            if ep == Provider::Cuda {
                // EXHAUSTIVE: cuDNN times every convolution algorithm once per input shape and
                // caches the winner; tiles share one shape, so only the first run pays. On the
                // H100 (docs/gpu/h100-run2) it gave the fastest network of the choices tried
                // (HEURISTIC, channels-last NHWC: no faster in fp32, same labels).
                let ep = ort::ep::CUDA::default()
                    .with_device_id(opts.device_id)
                    .with_conv_algorithm_search(ort::ep::cuda::ConvAlgorithmSearch::Exhaustive)
                    .with_tf32(opts.precision == Precision::Tf32)
                    .build()
                    .error_on_failure();
                b = b.with_execution_providers([ep]).map_err(|e| Error::Model(format!("CUDA could not start: {e}")))?;
            }
            let session = b.commit_from_memory(bytes).map_err(|e| Error::Model(format!("{name}: not a loadable ONNX model ({e})")))?;
            Ok((session, precision))
        };
        let build = |ep: Provider| build_as(ep, true);
        let mut fallback = None;
        let mut openvino_note = None;
        // on the CPU: OpenVINO where the runtime has it and it starts, else the default provider
        let mut cpu = || -> Result<((Session, Precision), Provider)> {
            // QCANET_OPENVINO=0 runs the same runtime on its default CPU provider
            let wanted = std::env::var("QCANET_OPENVINO").map_or(true, |v| v != "0");
            if providers.openvino && wanted {
                match build(Provider::OpenVino) {
                    Ok(s) => return Ok((s, Provider::OpenVino)),
                    Err(e) => {
                        // int8 picked by `auto` and refused: OpenVINO in fp32 before OpenVINO is given up
                        if opts.precision == Precision::Auto && variants.int8.is_some() {
                            if let Ok(s) = build_as(Provider::OpenVino, false) {
                                openvino_note = Some(format!("int8 not used (OpenVINO could not compile it: {e}); fp32"));
                                return Ok((s, Provider::OpenVino));
                            }
                        }
                        openvino_note = Some(format!("OpenVINO not used (it could not compile this network): {e}"))
                    }
                }
            }
            Ok((build(Provider::Default)?, Provider::Default))
        };
        let ((session, precision_used), provider) = match opts.device {
            Device::Cpu => cpu()?,
            Device::Cuda => (build(Provider::Cuda)?, Provider::Cuda),
            // int8 asked for runs on the CPU: CUDA is not tried (and not reported as failing)
            Device::Auto if providers.cuda && opts.precision != Precision::Int8 => match build(Provider::Cuda) {
                Ok(s) => (s, Provider::Cuda),
                Err(e) => {
                    fallback = Some(format!("CUDA not used: {e}"));
                    cpu()?
                }
            },
            Device::Auto => {
                fallback = crate::runtime::fallback_note();
                cpu()?
            }
        };
        let device_used = if provider == Provider::Cuda { Device::Cuda } else { Device::Cpu };
        let fallback = match (fallback, openvino_note) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        let mut raw = HashMap::new();
        if let Ok(md) = session.metadata() {
            if let Ok(keys) = md.custom_keys() {
                for k in keys {
                    if let Some(v) = md.custom(&k) {
                        raw.insert(k, v);
                    }
                }
            }
        }
        // a model file quantized by tools/quantize_int8.py says so in its metadata
        let precision_used = if precision_used == Precision::Fp32 && raw.get("qcanet.precision").map(String::as_str) == Some("int8") {
            Precision::Int8
        } else {
            precision_used
        };
        let mut info = NetInfo::from_metadata(raw)?;
        info.description = name.to_string();
        // tensor contract
        let ins = session.inputs();
        if ins.len() != 1 {
            return Err(Error::Model(format!("{name}: expected one input tensor, found {}", ins.len())));
        }
        crate::contract::check_5d(name, ins[0].name(), ins[0].dtype(), true)?;
        let outs = session.outputs();
        let pick = |want: &str| outs.iter().find(|o| o.name() == want);
        let prob = pick("prob").or_else(|| outs.first()).ok_or_else(|| Error::Model(format!("{name}: no output")))?;
        crate::contract::check_5d(name, prob.name(), prob.dtype(), false)?;
        let centre = match pick("centre") {
            Some(c) => {
                crate::contract::check_5d(name, c.name(), c.dtype(), false)?;
                Some(Output { name: c.name().to_string() })
            }
            None => None,
        };
        if info.role == Some(Role::Joint) && centre.is_none() {
            return Err(Error::Model(format!("{name}: a joint model needs a 'centre' output")));
        }
        if info.role.is_none() && centre.is_some() {
            info.role = Some(Role::Joint);
        }
        let input = ins[0].name().to_string();
        let prob = Output { name: prob.name().to_string() };
        Ok(Network { session: Mutex::new(session), info, input, prob, centre, device_used, provider, fallback, precision_used })
    }

    /// Tiles of `tile_voxels` each to run at once: several on a GPU, one on the CPU
    /// (where a batch only costs memory).
    pub fn batch_size(&self, tile_voxels: usize) -> usize {
        match self.device_used {
            Device::Cuda => (GPU_BATCH_VOXELS / tile_voxels.max(1)).clamp(1, MAX_BATCH),
            _ => 1,
        }
    }

    pub fn is_joint(&self) -> bool {
        self.centre.is_some()
    }

    /// Runs `b` tiles of [d, h, w] stored one after the other in `tiles` as one batch;
    /// returns (prob, centre?) as foreground probabilities, tile after tile.
    pub(crate) fn run_batch(&self, tiles: &[f32], b: usize, shape: [usize; 3]) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let [d, h, w] = shape;
        let n = d * h * w;
        if tiles.len() != b * n {
            return Err(Error::Internal(format!("batch of {b} tiles of {shape:?} given {} values", tiles.len())));
        }
        let t = TensorRef::from_array_view(([b, 1, d, h, w], tiles)).map_err(|e| Error::Inference(e.to_string()))?;
        let mut s = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let out = s.run(ort::inputs![self.input.as_str() => t]).map_err(|e| Error::Inference(format!("{}: {e}", self.info.description)))?;
        let read = |o: &Output| -> Result<Vec<f32>> {
            let v = out.get(o.name.as_str()).ok_or_else(|| Error::Inference(format!("output {} missing", o.name)))?;
            let (sh, data) = v.try_extract_tensor::<f32>().map_err(|e| Error::Inference(e.to_string()))?;
            let sh: Vec<i64> = sh.iter().copied().collect();
            if sh.len() != 5 || sh[0] != b as i64 || sh[2..] != [d as i64, h as i64, w as i64] {
                return Err(Error::Model(format!(
                    "{}: output {} has shape {sh:?} for input [{b}, 1, {d}, {h}, {w}]",
                    self.info.description, o.name
                )));
            }
            // each tile's block is [C, d, h, w]; with a softmax pair channel 1 is the foreground
            let (c, skip) = match sh[1] {
                1 => (1, 0),
                2 => (2, n),
                c => return Err(Error::Model(format!("{}: output {} has {c} channels (1 or 2 expected)", self.info.description, o.name))),
            };
            let mut v = Vec::with_capacity(b * n);
            for i in 0..b {
                let at = i * c * n + skip;
                v.extend_from_slice(&data[at..at + n]);
            }
            Ok(v)
        };
        let p = read(&self.prob)?;
        let c = match &self.centre {
            Some(o) => Some(read(o)?),
            None => None,
        };
        Ok((p, c))
    }
}

pub fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
