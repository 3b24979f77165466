// examples/cli/train.hpp — `llmblocks train`: pre-trains a model directory on
// token data and writes training checkpoints that resume bit-exactly
// (train/checkpoint.hpp):
//
//   llmblocks train --model DIR --data FILE --batch B --seq T --steps N --lr X --out DIR [options]
//
// Data is an llm.c token file (it starts with the magic 20240520; train/data.hpp)
// or text, tokenized with DIR's tokenizer (io/model_tokenizer.hpp). Without
// --val the last 10% of --data is held out. Objectives (train/objectives.hpp):
// decoder-only models (GPT-2, GPT-3, PaLM) train as causal LMs (or with
// --objective prefix: a random split point per batch, the prefix fully visible
// to itself and no loss inside it); T5 trains on span
// corruption of windows of T tokens (noise 15%, mean span 3, sentinels
// counting down from vocab_size - 1, decoder input = targets shifted right
// after decoder_start_token_id). Every window has the same length, so every
// span-corruption example has the same lengths and batches stack without padding.
//
// One step = --grad-accum micro-batches of --batch windows of --seq tokens
// (accumulate_gradients), global-norm clipping, the learning rate of a linear
// warmup + cosine decay to --min-lr (WarmupCosine; constant when --warmup is 0
// and --min-lr equals --lr), one optimizer step. The training loss includes
// the z-loss term (--z-loss); the validation loss is the plain cross-entropy
// over --eval-batches fixed batches (sequential windows of the validation
// data; span corruption there uses a fixed seed, so every evaluation sees the
// same examples).
//
// OUT receives loss.csv (step,loss,val_loss,lr,tokens_per_s,seconds; one row
// per step, flushed as it goes) and, every --save-every steps and at the end,
// a training checkpoint: config.json, model.safetensors, optimizer.safetensors,
// trainer_state.json and DIR's tokenizer files, so OUT is a model directory for
// `logits` and `generate`. --resume continues OUT's checkpoint: the settings
// that shape the run (batch, seq, grad-accum, optimizer, schedule, data, seed,
// ...) must be the same, and --steps is the total. Rows of loss.csv after the
// checkpoint's step (a run that crashed after its last save) are dropped, and
// new rows are appended.
//
// Errors follow cli.hpp: a malformed or contradictory command line exits 2;
// what depends on files (a missing model or data file, a token id outside the
// vocabulary, a resume that does not match) exits 1 with the file or flag named.
#pragma once

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

#include "cli/args.hpp"
#include "cli/io.hpp"
#include "cli/model_commands.hpp"
#include "cli/progress.hpp"
#include "llmblocks/core/error.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/io/config.hpp"
#include "llmblocks/io/model_tokenizer.hpp"
#include "llmblocks/ops/loss.hpp"
#include "llmblocks/train.hpp"

namespace llmblocks::cli {

namespace train_detail {

enum class Objective { Causal, Prefix, Span };

struct TrainOptions {
    std::filesystem::path model, data, val, out, log;
    index_t batch = 0, seq = 0, grad_accum = 1;
    std::int64_t steps = 0, warmup = 0, save_every = 0, eval_every = 0, eval_batches = 4;
    double lr = 0, min_lr = 0, weight_decay = 0, clip = 1.0, z_loss = 0;
    std::string optimizer = "adamw";
    std::string objective;  // "" = the model's default
    bool resume = false;
    std::uint64_t seed = 0;
};

// A finite decimal number; UsageError otherwise.
inline double get_double(const Args& args, const std::string& name, double fallback) {
    if (!args.has(name)) return fallback;
    const std::string& v = args.get(name);
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(x))
        throw UsageError("option '" + name + "' needs a number, got '" + v + "'");
    return x;
}

inline std::int64_t get_count(const Args& args, const std::string& name, std::int64_t fallback, std::int64_t min) {
    const std::int64_t x = args.get_int(name, fallback);
    if (x < min) throw UsageError("option '" + name + "' must be >= " + std::to_string(min) + ", got " + std::to_string(x));
    return x;
}

inline TrainOptions parse_options(const Args& args) {
    TrainOptions o;
    o.model = args.get("--model");
    o.data = args.get("--data");
    o.out = args.get("--out");
    if (o.out.empty()) throw UsageError("option '--out' needs a directory, got ''");
    if (args.has("--val")) o.val = args.get("--val");
    for (const char* required : {"--batch", "--seq", "--steps", "--lr"}) args.get(required);  // UsageError if absent
    o.batch = get_count(args, "--batch", 0, 1);
    o.seq = get_count(args, "--seq", 0, 1);
    o.steps = get_count(args, "--steps", 0, 1);
    o.lr = get_double(args, "--lr", 0);
    if (o.lr <= 0) throw UsageError("option '--lr' must be > 0, got " + args.get("--lr"));
    o.min_lr = get_double(args, "--min-lr", 0.1 * o.lr);
    if (o.min_lr < 0 || o.min_lr > o.lr)
        throw UsageError("option '--min-lr' must be in [0, --lr], got " + args.get("--min-lr"));
    o.warmup = get_count(args, "--warmup", 0, 0);
    if (o.warmup > o.steps) throw UsageError("option '--warmup' (" + std::to_string(o.warmup) + ") exceeds --steps (" +
                                             std::to_string(o.steps) + ")");
    o.optimizer = args.get_or("--optimizer", "adamw");
    if (o.optimizer != "adamw" && o.optimizer != "adafactor" && o.optimizer != "sgd")
        throw UsageError("option '--optimizer': unknown optimizer '" + o.optimizer + "' (expected adamw, adafactor or sgd)");
    o.weight_decay = get_double(args, "--weight-decay", o.optimizer == "adamw" ? 0.1 : 0.0);
    if (o.weight_decay < 0) throw UsageError("option '--weight-decay' must be >= 0, got " + args.get("--weight-decay"));
    o.clip = get_double(args, "--clip", 1.0);
    if (o.clip < 0) throw UsageError("option '--clip' must be >= 0 (0: no clipping), got " + args.get("--clip"));
    o.grad_accum = get_count(args, "--grad-accum", 1, 1);
    o.z_loss = get_double(args, "--z-loss", 0.0);
    if (o.z_loss < 0) throw UsageError("option '--z-loss' must be >= 0, got " + args.get("--z-loss"));
    o.objective = args.get_or("--objective", "");
    if (!o.objective.empty() && o.objective != "causal" && o.objective != "prefix" && o.objective != "span")
        throw UsageError("option '--objective': unknown objective '" + o.objective + "' (expected causal, prefix or span)");
    o.save_every = get_count(args, "--save-every", 0, 0);
    o.eval_every = get_count(args, "--eval-every", std::max<std::int64_t>(1, o.steps / 10), 0);
    o.eval_batches = get_count(args, "--eval-batches", 4, 1);
    o.resume = args.has("--resume");
    o.seed = static_cast<std::uint64_t>(get_count(args, "--seed", 0, 0));
    o.log = args.has("--log") ? std::filesystem::path(args.get("--log")) : o.out / "loss.csv";
    return o;
}

// FNV-1a over the token ids: the data's fingerprint in the resume check.
inline std::string token_hash(const TokenDataset& d) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (const std::int32_t t : d.tokens()) {
        auto u = static_cast<std::uint32_t>(t);
        for (int k = 0; k < 4; ++k, u >>= 8) h = (h ^ (u & 0xff)) * 0x100000001b3ULL;
    }
    char buf[20];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

// The shortest decimal that reads back as x.
inline std::string exact(double x) {
    char buf[40];
    const auto res = std::to_chars(buf, buf + sizeof buf, x);
    return std::string(buf, res.ptr);
}

// Token ids of a data file: an llm.c token file (by its magic number) or text through the tokenizer.
inline TokenDataset load_data(const std::filesystem::path& path, const std::optional<ModelTokenizer>& tokenizer,
                              const std::filesystem::path& tokenizer_dir, index_t vocab) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) fail("data file '", path.string(), "' does not exist");
    if (!std::filesystem::is_regular_file(path, ec)) fail("data file '", path.string(), "' is not a regular file");
    std::int32_t magic = 0;
    {
        std::ifstream in(path, std::ios::binary);
        LLMBLOCKS_CHECK(in.good(), "cannot open data file '", path.string(), "'");
        in.read(reinterpret_cast<char*>(&magic), sizeof magic);
        if (in.gcount() != sizeof magic) magic = 0;
    }
    TokenDataset data;
    if (magic == kTokenFileMagic || path.extension() == ".bin") {
        data = TokenDataset::from_token_file(path);  // checks magic, version and size, naming the file
    } else {
        if (!tokenizer)
            fail("data file '", path.string(), "' is text (not an llm.c token file) and model directory '",
                 tokenizer_dir.string(),
                 "' has no tokenizer (vocab.json + merges.txt, or tokenizer_config.json): give a token file or add a tokenizer");
        data = TokenDataset::from_text_file(path, [&](std::string_view text) { return tokenizer->encode(text); });
    }
    const auto tokens = data.tokens();
    for (std::size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i] < 0 || tokens[i] >= vocab)
            fail("data file '", path.string(), "': token id ", tokens[i], " (at position ", i,
                 ") is out of range for the model's vocabulary of ", vocab);
    return data;
}

// One batch in the model's terms.
struct Batch {
    TensorI inputs;             // (B, T) decoder-only input, or (B, Te) T5 encoder input
    TensorI decoder_inputs;     // (B, Td) T5 only
    TensorI targets;            // (B, T) or (B, Td); -100 = no loss
    index_t prefix_length = 0;  // prefix LM: tokens [0, P) see each other
};

struct ObjectiveSpec {
    Objective kind = Objective::Causal;
    SpanCorruptionOptions span;          // T5: sentinels from vocab_size - 1 down
    std::int32_t decoder_start = 0;      // T5's decoder_start_token_id
};

// windows (B, T + 1): the sampler's inputs and targets give the T + 1 tokens of each row.
inline Batch make_batch(const TokenBatch& windows, const ObjectiveSpec& spec, Rng& rng) {
    const index_t B = windows.inputs.size(0), T = windows.inputs.size(1);
    if (spec.kind == Objective::Causal) return {windows.inputs, TensorI(), windows.targets};
    if (spec.kind == Objective::Prefix) {
        // One split point P in [1, T] per batch (the attention mask takes one prefix
        // length per call), as prefix_lm(tokens, rng) draws it; no loss inside the prefix.
        Batch b{windows.inputs, TensorI(), windows.targets.clone(), rng.randint(1, T + 1)};
        for (index_t r = 0; r < B; ++r)
            for (index_t t = 0; t + 1 < b.prefix_length; ++t) b.targets.data()[r * T + t] = kIgnoreIndex;
        return b;
    }
    // Span corruption of the T input tokens of each window.
    const Seq2SeqBatch s = span_corruption_batch(windows.inputs, spec.span, spec.decoder_start, rng);
    return {s.encoder_ids, s.decoder_ids, s.targets};
}

// Mean cross-entropy of a batch (plus z-loss), recording the graph.
inline Variable<float> batch_loss(const LoadedModel& m, const Batch& b, double z_loss) {
    const Variable<float> logits = std::visit(
        [&](const auto& model) -> Variable<float> {
            if constexpr (std::is_same_v<std::decay_t<decltype(model)>, T5Model<float>>)
                return model.forward(b.inputs, b.decoder_inputs);
            else
                return model.forward(b.inputs, {}, b.prefix_length);
        },
        m.model);
    CrossEntropyOptions ce;
    ce.z_loss = z_loss;
    return cross_entropy(logits, b.targets, ce);
}

// The validation loss: mean over the first `max_batches` sequential batches; span
// corruption and prefix splits drawn from a fixed seed, the same at every evaluation.
inline double evaluate(const LoadedModel& m, const TokenDataset& val, index_t B, index_t T, std::int64_t max_batches,
                       const ObjectiveSpec& spec, std::uint64_t seed) {
    auto guard = no_grad();
    Rng rng(seed ^ 0x76616c6964617465ULL);  // "validate"
    const index_t n = std::min<index_t>(num_sequential_batches(val, B, T), max_batches);
    double total = 0;
    for (index_t i = 0; i < n; ++i) total += batch_loss(m, make_batch(sequential_batch(val, i, B, T), spec, rng), 0.0).item();
    return total / static_cast<double>(n);
}

// loss.csv: a header and one row per step, flushed row by row.
class LossLog {
public:
    static constexpr const char* kHeader = "step,loss,val_loss,lr,tokens_per_s,seconds";

    // A fresh log, or (resume) the existing one without rows after `keep_through`.
    LossLog(const std::filesystem::path& path, bool resume, std::int64_t keep_through) : path_(path) {
        std::error_code ec;
        if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
        std::string kept = std::string(kHeader) + "\n";
        if (resume && std::filesystem::exists(path, ec)) {
            std::ifstream in(path);
            std::string line;
            std::getline(in, line);
            LLMBLOCKS_CHECK(line == kHeader, "log file '", path.string(), "' does not start with the header '", kHeader,
                            "' (not a loss log of llmblocks train)");
            while (std::getline(in, line)) {
                if (line.empty()) continue;
                const std::int64_t step = std::atoll(line.c_str());
                if (step >= 1 && step <= keep_through) kept += line + "\n";
            }
        }
        AtomicFileWriter writer(path);
        writer.write(kept.data(), kept.size());
        writer.commit();
        out_.open(path, std::ios::app);
        LLMBLOCKS_CHECK(out_.good(), "cannot open log file '", path.string(), "' for appending");
    }

    void row(std::int64_t step, double loss, std::optional<double> val, double lr, double tokens_per_s, double seconds) {
        char buf[256];
        std::string v;
        if (val) {
            std::snprintf(buf, sizeof buf, "%.6f", *val);
            v = buf;
        }
        std::snprintf(buf, sizeof buf, "%lld,%.6f,%s,%.6g,%.1f,%.3f\n", static_cast<long long>(step), loss, v.c_str(),
                      lr, tokens_per_s, seconds);
        out_ << buf;
        out_.flush();
        LLMBLOCKS_CHECK(out_.good(), "cannot write log file '", path_.string(), "'");
    }

private:
    std::filesystem::path path_;
    std::ofstream out_;
};

inline std::unique_ptr<Optimizer<float>> make_optimizer(const TrainOptions& o, ParameterList<float> params) {
    if (o.optimizer == "adamw") {
        AdamWOptions a;
        a.lr = o.lr;
        a.beta1 = 0.9;
        a.beta2 = 0.95;  // GPT-3
        a.eps = 1e-8;
        a.weight_decay = o.weight_decay;  // matrices only (decay_matrices_only)
        return std::make_unique<AdamW<float>>(std::move(params), a);
    }
    if (o.optimizer == "adafactor") {
        AdafactorOptions a;
        a.lr = o.lr;
        a.relative_step = false;  // the schedule sets the step size
        return std::make_unique<Adafactor<float>>(std::move(params), a);
    }
    SgdOptions s;
    s.lr = o.lr;
    s.momentum = 0.9;
    s.weight_decay = o.weight_decay;
    return std::make_unique<Sgd<float>>(std::move(params), s);
}

}  // namespace train_detail

inline int run_train(const Args& args, Io& io) {
    using namespace train_detail;
    const TrainOptions o = parse_options(args);
    std::error_code ec;

    // The model: DIR's weights, or OUT's checkpoint when resuming.
    if (o.resume && !has_training_checkpoint(o.out))
        fail("--resume: '", (o.out / kTrainerStateFile).string(), "' does not exist (no checkpoint to continue in '",
             o.out.string(), "')");
    if (!o.resume && has_training_checkpoint(o.out))
        fail("'", o.out.string(), "' already holds a training checkpoint (", kTrainerStateFile,
             "); pass --resume to continue it or choose another --out");
    LoadedModel m = load_model_dir(o.resume ? o.out : o.model);
    const ModelConfig dir_config = o.resume ? load_config(o.model / "config.json") : m.config;
    const std::string model_type = model_type_of(m.config);
    const index_t vocab = m.vocab_size();

    // The objective.
    ObjectiveSpec spec;
    const std::string objective = !o.objective.empty() ? o.objective : m.is_t5() ? "span" : "causal";
    if (m.is_t5() && objective != "span")
        throw UsageError("option '--objective " + objective + "' is for decoder-only models; t5 trains with 'span'");
    if (!m.is_t5() && objective == "span")
        throw UsageError("option '--objective span' is for t5; " + model_type + " trains with 'causal' or 'prefix'");
    spec.kind = objective == "span" ? Objective::Span : objective == "prefix" ? Objective::Prefix : Objective::Causal;
    if (m.context() > 0 && o.seq > m.context())
        fail("--seq ", o.seq, " exceeds the model's context of ", m.context(), " positions");

    // The data.
    const std::filesystem::path tokenizer_dir = o.resume ? o.out : o.model;
    const std::optional<ModelTokenizer> tokenizer = ModelTokenizer::from_directory(tokenizer_dir);
    const TokenDataset all = load_data(o.data, tokenizer, tokenizer_dir, vocab);
    TokenDataset train = all, val;
    if (!o.val.empty()) val = load_data(o.val, tokenizer, tokenizer_dir, vocab);
    else std::tie(train, val) = all.split(0.1);
    if (train.size() < o.seq + 1)
        fail("data file '", o.data.string(), "': ", train.size(), " training tokens", o.val.empty() ? " (90%)" : "",
             " are too few for one window of --seq + 1 = ", o.seq + 1);
    const std::string val_name = o.val.empty() ? "the last 10% of '" + o.data.string() + "'" : "'" + o.val.string() + "'";
    if (val.size() < o.seq + 1)
        fail("validation data (", val_name, "): ", val.size(), " tokens are too few for one window of --seq + 1 = ", o.seq + 1);
    // Validation batches of --batch rows, fewer when the data is short.
    const index_t val_batch = std::min<index_t>(o.batch, (val.size() - 1) / o.seq);
    if (spec.kind == Objective::Span) {
        const auto [noise, spans] = span_corruption_counts(o.seq, spec.span);
        (void)noise;
        const auto& t5 = std::get<T5Config>(m.config);
        spec.span.first_sentinel = static_cast<std::int32_t>(vocab - 1);
        spec.decoder_start = static_cast<std::int32_t>(t5.decoder_start_token_id);
        const index_t lowest = vocab - spans;
        for (const TokenDataset* d : {&train, &val})
            for (const std::int32_t t : d->tokens())
                if (t >= lowest)
                    fail("data file '", (d == &val && !o.val.empty() ? o.val : o.data).string(), "': token id ", t,
                         " is one of the span-corruption sentinels ", lowest, "..", vocab - 1,
                         " (the top ids of the vocabulary of ", vocab, ")");
    }

    // What a resume must repeat.
    std::map<std::string, std::string> settings{
        {"model config", token_hash(TokenDataset(byte_tokens(config_to_string(dir_config))))},
        {"--batch", std::to_string(o.batch)},
        {"--seq", std::to_string(o.seq)},
        {"--grad-accum", std::to_string(o.grad_accum)},
        {"--optimizer", o.optimizer},
        {"--lr", exact(o.lr)},
        {"--min-lr", exact(o.min_lr)},
        {"--warmup", std::to_string(o.warmup)},
        {"--weight-decay", exact(o.weight_decay)},
        {"--clip", exact(o.clip)},
        {"--z-loss", exact(o.z_loss)},
        {"--objective", objective},
        {"--seed", std::to_string(o.seed)},
        {"--data", std::to_string(train.size()) + " training tokens, hash " + token_hash(train)},
        {"validation data", std::to_string(val.size()) + " tokens, hash " + token_hash(val)},
    };
    if (o.min_lr != o.lr) settings["--steps"] = std::to_string(o.steps);  // the cosine ends at --steps

    // Model parameters, optimizer, sampler, objective Rng.
    const ParameterList<float> params = checkpoint_parameters(m.schema);
    std::unique_ptr<Optimizer<float>> opt = make_optimizer(o, params);
    WindowSampler sampler(train, o.batch, o.seq, o.seed);
    Rng objective_rng(o.seed ^ 0x6f626a6563746976ULL);  // "objectiv"
    TrainerState state;
    if (o.resume) {
        state = load_training_checkpoint(o.out, m.schema, *opt);
        const std::string diff = settings_difference(state.settings, settings);
        if (!diff.empty())
            fail("--resume: these settings differ from the checkpoint '", (o.out / kTrainerStateFile).string(), "': ", diff);
        LLMBLOCKS_CHECK(state.rngs.count("sampler") && state.rngs.count("objective"), "--resume: '",
                        (o.out / kTrainerStateFile).string(), "' has no \"sampler\" and \"objective\" Rng snapshots");
        sampler.restore(state.rngs.at("sampler"));
        objective_rng.restore(state.rngs.at("objective"));
        if (state.step > o.steps)
            fail("--resume: the checkpoint in '", o.out.string(), "' is at step ", state.step, ", past --steps ", o.steps);
        if (state.step == o.steps) {
            io.out << "the checkpoint in " << o.out.string() << " is already at step " << o.steps << "; nothing to do\n";
            return 0;
        }
    }
    state.settings = settings;
    const std::int64_t first_step = state.step;
    const double prior_seconds = state.elapsed_seconds;

    std::filesystem::create_directories(o.out, ec);
    if (ec) fail("cannot create directory '", o.out.string(), "': ", ec.message());
    if (!o.resume) ModelTokenizer::copy_files(o.model, o.out);
    LossLog log(o.log, o.resume, first_step);

    const WarmupCosine schedule{o.lr, o.min_lr, o.warmup, o.steps};
    const double tokens_per_step = static_cast<double>(o.batch * o.seq * o.grad_accum);
    ProgressBar progress(io.out, model_type, o.steps, stdout_is_terminal() && &io.out == &std::cout,
                         std::max<std::int64_t>(1, (o.steps - first_step) / 10), first_step);
    using Clock = std::chrono::steady_clock;
    const auto run_start = Clock::now();
    double train_seconds = 0, last_loss = NAN;
    std::optional<double> last_val;

    auto save = [&](std::int64_t step) {
        state.step = step;
        state.elapsed_seconds = prior_seconds + std::chrono::duration<double>(Clock::now() - run_start).count();
        state.rngs = {{"sampler", sampler.snapshot()}, {"objective", objective_rng.snapshot()}};
        save_training_checkpoint(o.out, m.config, m.schema, *opt, state);
    };

    for (std::int64_t step = first_step; step < o.steps; ++step) {
        const auto t0 = Clock::now();
        opt->zero_grad();
        const double loss = accumulate_gradients<float>(o.grad_accum, [&](index_t) {
            return batch_loss(m, make_batch(sampler.next(), spec, objective_rng), o.z_loss);
        });
        if (!std::isfinite(loss))
            fail("training diverged at step ", step + 1, " (loss ", loss, "); lower --lr or raise --warmup");
        if (o.clip > 0) clip_grad_norm(params, o.clip);
        const double lr = schedule(step);
        opt->set_lr(lr);
        if (auto* adafactor = dynamic_cast<Adafactor<float>*>(opt.get()))
            adafactor->set_weight_decay_rate(lr * o.weight_decay);  // decoupled, as AdamW: lr * weight_decay per step
        opt->step();
        const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
        train_seconds += seconds;

        const std::int64_t done = step + 1;
        std::optional<double> val_loss;
        if (done == o.steps || (o.eval_every > 0 && done % o.eval_every == 0))
            val_loss = evaluate(m, val, val_batch, o.seq, o.eval_batches, spec, o.seed);
        last_loss = loss;
        if (val_loss) last_val = val_loss;
        const double elapsed = prior_seconds + std::chrono::duration<double>(Clock::now() - run_start).count();
        log.row(done, loss, val_loss, lr, tokens_per_step / seconds, elapsed);
        progress.update(done, loss, tokens_per_step * static_cast<double>(done - first_step) / train_seconds, val_loss);
        if (done == o.steps || (o.save_every > 0 && done % o.save_every == 0)) save(done);
    }  // the last update ended the progress line

    char buf[512];
    std::snprintf(buf, sizeof buf, "trained %s to step %lld: loss %.4f, val loss %.4f, %s tokens/s; checkpoint in %s\n",
                  model_type.c_str(), static_cast<long long>(o.steps), last_loss, last_val.value_or(NAN),
                  format_rate(tokens_per_step * static_cast<double>(o.steps - first_step) / train_seconds).c_str(),
                  o.out.string().c_str());
    io.out << buf;
    return 0;
}

// The rows of cli.hpp's subcommand table for train.
template <class Subcommand>
std::vector<Subcommand> train_subcommands() {
    return {
        {"train",
         "--model DIR --data FILE [--val FILE] --batch B --seq T --steps N --lr X --out DIR [--warmup N] [--min-lr X] "
         "[--weight-decay X] [--clip X] [--grad-accum K] [--optimizer adamw|adafactor|sgd] [--z-loss X] "
         "[--objective causal|prefix|span] [--save-every N] [--eval-every N] [--eval-batches K] [--resume] [--seed S] "
         "[--log FILE.csv]",
         "train a model directory on token data; OUT gets loss.csv and a resumable checkpoint",
         {{"--model", "DIR", "model directory to start from: config.json, model.safetensors, tokenizer files"},
          {"--data", "FILE", "llm.c token file (.bin), or text tokenized with DIR's tokenizer"},
          {"--val", "FILE", "validation data (default: the last 10% of --data)"},
          {"--batch", "B", "windows per micro-batch"},
          {"--seq", "T", "tokens per window (T5: the length before span corruption)"},
          {"--steps", "N", "total optimizer steps (with --resume too)"},
          {"--lr", "X", "peak learning rate"},
          {"--out", "DIR", "output directory: loss.csv and the checkpoint (a model directory)"},
          {"--warmup", "N", "linear warmup steps (default 0)"},
          {"--min-lr", "X", "learning rate at the end of the cosine decay (default 0.1 * --lr; = --lr: constant)"},
          {"--weight-decay", "X", "decoupled weight decay (default 0.1 for adamw, on matrices only; 0 otherwise)"},
          {"--clip", "X", "global gradient-norm clipping threshold (default 1.0; 0: off)"},
          {"--grad-accum", "K", "micro-batches per step (default 1)"},
          {"--optimizer", "NAME", "adamw (default; betas 0.9, 0.95), adafactor (step = lr * RMS(parameter)) or sgd (momentum 0.9)"},
          {"--z-loss", "X", "PaLM's z-loss coefficient added to the training loss (default 0; PaLM: 1e-4)"},
          {"--objective", "NAME", "causal (default), prefix (decoder-only) or span (t5, its default)"},
          {"--save-every", "N", "also save a checkpoint every N steps (default: only at the end)"},
          {"--eval-every", "N", "validation loss every N steps and at the end (default steps/10; 0: at the end)"},
          {"--eval-batches", "K", "validation batches per evaluation (default 4)"},
          {"--resume", "", "continue the checkpoint in --out (same settings; --steps is the total)"},
          {"--seed", "S", "seed of the data sampler and the objective (default 0)"},
          {"--log", "FILE", "the loss log (default OUT/loss.csv)"}},
         run_train},
    };
}

}  // namespace llmblocks::cli
