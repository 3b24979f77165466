// examples/quickstart.cpp — the demo the README's first command runs.
//
// 1. The four architectures side by side, from their published configs alone:
//    parameters, training FLOPs per token, KV-cache bytes per token.
// 2. Three small models, one per family, trained from scratch on the same
//    text, byte by byte:
//      GPT-2-style  serial blocks, LayerNorm, learned positions, GELU MLP
//      PaLM-style   parallel blocks, multi-query attention, RoPE, SwiGLU, no biases
//      T5-style     encoder-decoder, relative position buckets, RMSNorm,
//                   trained on span corruption (15% of the bytes, spans of 3)
//    each with the optimizer its paper used: GPT-2 AdamW with warmup and
//    cosine decay; PaLM Adafactor without factorisation, with momentum and
//    weight decay lr^2; T5 Adafactor with factored second moments, no
//    momentum. Adafactor's step is relative to each parameter's scale, which
//    matters for T5, whose embedding starts at standard deviation 1.
//    The text comes from a small grammar below (generated, so it needs no
//    file and has structure a model can learn); 10% is held out and the
//    validation loss is measured on it.
// 3. A table of the three runs and a sample from each: GPT-2 and PaLM
//    continue a prompt; T5 fills the gaps of a corrupted held-out sentence.
//
// Each run shows a progress bar on a terminal and log lines otherwise.
// The whole demo takes about two minutes on two cores.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/progress.hpp"
#include "llmblocks/llmblocks.hpp"

namespace lb = llmblocks;

namespace {

// ---- the corpus ---------------------------------------------------------------------------

// Sentences about transformers from a small grammar: subject, verb, object,
// and an optional tail, with number agreement between subject and verb.
std::string make_corpus(int sentences, std::uint64_t seed) {
    struct Subject { const char* text; bool plural; };
    static const Subject subjects[] = {
        {"the encoder", false},     {"the decoder", false},        {"every attention head", false},
        {"the small model", false}, {"the optimizer", false},      {"each block", false},
        {"the keys and values", true}, {"the queries", true},      {"the feed-forward layers", true},
        {"the sentinels", true},    {"the learned positions", true}, {"the residual streams", true}};
    static const char* verbs[][2] = {{"reads", "read"},       {"predicts", "predict"}, {"rotates", "rotate"},
                                     {"mixes", "mix"},        {"scales", "scale"},     {"remembers", "remember"},
                                     {"attends to", "attend to"}, {"normalises", "normalise"}};
    static const char* objects[] = {"the next token",   "each position",    "the hidden state", "a span of text",
                                    "the whole prefix", "the cached keys",  "every layer",      "the relative distance"};
    static const char* tails[] = {"", "", "", " in parallel", " one step at a time", " before each block",
                                  " with a learned bias", " at every layer"};
    lb::Rng rng(seed);
    const auto pick = [&rng](auto& list) -> auto& {
        return list[rng.randint(0, static_cast<std::int64_t>(std::size(list)))];
    };
    std::string text;
    for (int i = 0; i < sentences; ++i) {
        const Subject& s = pick(subjects);
        text += s.text;
        text += ' ';
        text += pick(verbs)[s.plural ? 1 : 0];
        text += ' ';
        text += pick(objects);
        text += pick(tails);
        text += ".\n";
    }
    return text;
}

// Token ids: the 256 byte values, then <|endoftext|> (256); T5 adds 16
// sentinels at the top of its vocabulary (<extra_id_0> = 272, counting down).
constexpr lb::index_t kBytesAndEos = 257, kSentinels = 16, kT5Vocab = kBytesAndEos + kSentinels;
constexpr std::int32_t kEos = 256;

// ---- the training runs ----------------------------------------------------------------------

// How long each model trains: steps of `batch` windows of `seq` bytes.
struct Budget {
    int steps;
    lb::index_t batch, seq;
};
// GPT-2 and PaLM see windows of 128 bytes (their samples below stay within
// the positions they were trained on). T5's examples are single sentences'
// worth of bytes, and it gets more steps: span corruption makes a target of
// only 15% of the bytes, so each step teaches it less.
constexpr Budget kDecoderBudget{300, 8, 128}, kT5Budget{400, 16, 64};
constexpr int kEvalBatches = 8;

struct Run {
    std::string name;
    lb::index_t parameters = 0;
    double first_loss = 0, train_loss = 0, val_loss = 0, tokens_per_s = 0, seconds = 0;
    std::string sample_prompt, sample;
};

enum class Recipe { AdamW, PaLMAdafactor, T5Adafactor };

// Trains `model` on random windows of `train` with the recipe's optimizer
// (global gradient-norm clipping at 1); loss_of(model, batch, rng) is the
// objective. The training loss reported is the mean of the last 20 steps.
template <class Model, class LossOf>
Run train(const std::string& name, Model& model, Recipe recipe, const Budget& budget, const lb::TokenDataset& train,
          const lb::TokenDataset& val, const LossOf& loss_of) {
    const int steps = budget.steps;
    const lb::index_t B = budget.batch, T = budget.seq;
    Run run;
    run.name = name;
    const lb::ParameterList<float> params = lb::named_parameters<float>(model);
    run.parameters = lb::parameter_count(params);
    std::unique_ptr<lb::Optimizer<float>> optimizer;
    lb::Adafactor<float>* adafactor = nullptr;
    if (recipe == Recipe::AdamW) {
        optimizer = std::make_unique<lb::AdamW<float>>(params, lb::AdamWOptions{.lr = 3e-3, .beta2 = 0.99, .weight_decay = 0.01});
    } else {
        auto a = std::make_unique<lb::Adafactor<float>>(
            params, recipe == Recipe::PaLMAdafactor ? lb::AdafactorOptions::palm() : lb::AdafactorOptions{});
        adafactor = a.get();
        optimizer = std::move(a);
    }
    const lb::WarmupCosine schedule{.max_lr = 3e-3, .min_lr = 3e-4, .warmup_steps = 30, .total_steps = steps};
    lb::WindowSampler sampler(train, B, T, /*seed=*/1);
    lb::Rng objective_rng(2);

    const auto validation_loss = [&] {
        auto guard = lb::no_grad();
        lb::Rng eval_rng(3);  // the same held-out corruption every time
        const lb::index_t n = std::min<lb::index_t>(kEvalBatches, lb::num_sequential_batches(val, B, T));
        double sum = 0;
        for (lb::index_t i = 0; i < n; ++i) sum += loss_of(model, lb::sequential_batch(val, i, B, T), eval_rng).item();
        return sum / static_cast<double>(n);
    };

    lb::cli::ProgressBar progress(std::cout, name, steps, lb::cli::stdout_is_terminal(), /*log_every=*/50);
    const auto start = std::chrono::steady_clock::now();
    double recent = 0;
    for (int step = 1; step <= steps; ++step) {
        if (recipe == Recipe::AdamW) optimizer->set_lr(schedule(step - 1));
        if (recipe == Recipe::PaLMAdafactor) adafactor->set_weight_decay_rate(std::pow(adafactor->relative_step_size(), 2));
        lb::Variable<float> loss = loss_of(model, sampler.next(), objective_rng);
        loss.backward();
        lb::clip_grad_norm(params, 1.0);
        optimizer->step();
        optimizer->zero_grad();

        const double value = loss.item();
        if (step == 1) run.first_loss = value;
        if (step > steps - 20) recent += value / 20;
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double tokens_per_s = static_cast<double>(step * B * T) / seconds;
        if (step % 100 == 0) {  // every 100 steps, and the last step is one of them
            run.val_loss = validation_loss();
            progress.update(step, value, tokens_per_s, run.val_loss);
        } else {
            progress.update(step, value, tokens_per_s);
        }
    }
    run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    run.tokens_per_s = static_cast<double>(steps * B * T) / run.seconds;
    run.train_loss = recent;
    return run;
}

// Decoder-only objective: predict each next byte.
template <class Model>
lb::Variable<float> causal_loss(const Model& model, const lb::TokenBatch& batch, lb::Rng&) {
    return model.loss(batch.inputs, batch.targets);
}

// T5's objective: the inputs are the windows themselves, corrupted.
const lb::SpanCorruptionOptions kSpans{.noise_density = 0.15, .mean_noise_span_length = 3.0,
                                       .first_sentinel = static_cast<std::int32_t>(kT5Vocab - 1), .eos_id = kEos};

lb::Variable<float> span_loss(const lb::T5Model<float>& model, const lb::TokenBatch& batch, lb::Rng& rng) {
    const lb::Seq2SeqBatch b = lb::span_corruption_batch(batch.inputs, kSpans, /*start_id=*/0, rng);
    return model.loss(b.encoder_ids, b.decoder_ids, b.targets);
}

// ---- samples --------------------------------------------------------------------------------

// Bytes as text; the sentinels as <X>, <Y>, <Z>, <S3>, ... (T5's paper writes them so) and
// <|endoftext|> as itself.
// one_line writes a newline as \n.
std::string show(const std::vector<std::int32_t>& ids, bool one_line = false) {
    std::string s;
    for (std::int32_t id : ids) {
        if (id == '\n' && one_line) s += "\\n";
        else if (id < 256) s += static_cast<char>(id);
        else if (id == kEos) s += "<|endoftext|>";
        else {
            const auto k = static_cast<std::size_t>(kT5Vocab - 1 - id);  // <extra_id_k>
            static const char* names[] = {"<X>", "<Y>", "<Z>"};
            s += k < std::size(names) ? std::string(names[k]) : "<S" + std::to_string(k) + ">";
        }
    }
    return s;
}

std::vector<std::int32_t> bytes_of(const std::string& text) {
    std::vector<std::int32_t> ids;
    for (const char c : text) ids.push_back(static_cast<unsigned char>(c));
    return ids;
}

template <class Model>
void continue_prompt(Run& run, const Model& model, const std::string& prompt) {
    lb::GenerateOptions options;
    options.max_new_tokens = 120;
    options.sampling = {.temperature = 0.7, .top_k = 20};
    options.seed = 7;
    const lb::Generation g = lb::generate(model, {bytes_of(prompt)}, options);
    run.sample_prompt = prompt;
    run.sample = prompt + show(g.tokens[0]);
}

void fill_gaps(Run& run, const lb::T5Model<float>& model, const std::string& sentence) {
    lb::Rng rng(11);
    const std::vector<std::int32_t> bytes = bytes_of(sentence);
    const lb::SpanCorruptionExample ex = lb::span_corruption(bytes, kSpans, rng);
    lb::GenerateOptions options;
    options.max_new_tokens = 32;
    options.sampling.temperature = 0;  // greedy
    options.eos_id = kEos;
    const lb::Generation g = lb::generate(model, {ex.inputs}, options);
    run.sample_prompt = show(ex.inputs, true);
    run.sample = show(g.tokens[0], true) + "   (expected " + show(ex.targets, true) + ")";
}

void print_architectures() {
    std::printf("The published sizes, from their configs alone:\n\n");
    std::printf("  %-12s %14s %18s %16s\n", "preset", "parameters", "train FLOPs/token", "KV bytes/token");
    auto row = [](const char* name, const lb::ModelCounts& c) {
        std::printf("  %-12s %12.3f B %18.3g %16lld\n", name, c.parameters / 1e9, c.training_flops_per_token,
                    static_cast<long long>(c.kv_cache_bytes_per_token));
    };
    row("GPT-2 124M", lb::count(lb::GPT2Config::gpt2_preset("124M")));
    row("GPT-3 175B", lb::count(lb::GPT2Config::gpt3_preset("175B")));
    row("PaLM 540B", lb::count(lb::PaLMConfig::preset("540B")));
    row("T5 11B", lb::count(lb::T5Config::preset("11B")));
    std::printf("\n");
}

}  // namespace

int main() {
    print_architectures();

    const std::string text = make_corpus(6000, /*seed=*/2026);
    const auto [train_set, val_set] = lb::TokenDataset(lb::byte_tokens(text)).split(0.1);
    std::printf("Training three small models on %lld bytes of generated text (%lld held out), e.g.\n  %s\n",
                static_cast<long long>(train_set.size()), static_cast<long long>(val_set.size()),
                text.substr(0, text.find('\n')).c_str());

    lb::Rng init(0);
    lb::GPT2Config gpt2_config = lb::GPT2Config::gpt2_preset("tiny");
    gpt2_config.vocab_size = kBytesAndEos, gpt2_config.n_embd = 128, gpt2_config.n_layer = 4, gpt2_config.n_head = 4;
    lb::GPT2Model<float> gpt2(gpt2_config, init);

    lb::PaLMConfig palm_config = lb::PaLMConfig::preset("tiny");
    palm_config.vocab_size = kBytesAndEos, palm_config.hidden_size = 128, palm_config.num_hidden_layers = 4;
    palm_config.num_attention_heads = 4, palm_config.head_dim = 32, palm_config.intermediate_size = 384;
    lb::PaLMModel<float> palm(palm_config, init);

    lb::T5Config t5_config = lb::T5Config::preset("tiny");
    t5_config.vocab_size = kT5Vocab, t5_config.d_model = 128, t5_config.d_kv = 32, t5_config.num_heads = 4;
    t5_config.d_ff = 256, t5_config.num_layers = 3, t5_config.feed_forward_proj = lb::T5FeedForward::GatedGELU;
    t5_config.eos_token_id = kEos;
    lb::T5Model<float> t5(t5_config, init);

    std::printf("\n");
    std::vector<Run> runs;
    runs.push_back(train("GPT-2", gpt2, Recipe::AdamW, kDecoderBudget, train_set, val_set, causal_loss<lb::GPT2Model<float>>));
    runs.push_back(train("PaLM ", palm, Recipe::PaLMAdafactor, kDecoderBudget, train_set, val_set, causal_loss<lb::PaLMModel<float>>));
    runs.push_back(train("T5   ", t5, Recipe::T5Adafactor, kT5Budget, train_set, val_set, span_loss));

    const std::string held_out(val_set.tokens().begin(), val_set.tokens().end());
    const std::size_t first = held_out.find('\n') + 1;  // the first whole held-out sentence
    const std::string sentence = held_out.substr(first, held_out.find('\n', first) - first);
    continue_prompt(runs[0], gpt2, "the ");
    continue_prompt(runs[1], palm, "the ");
    fill_gaps(runs[2], t5, sentence);

    std::printf("\n  %-6s %11s %11s %11s %9s %11s %8s\n", "model", "parameters", "first loss", "train loss",
                "val loss", "tokens/s", "seconds");
    for (const Run& r : runs)
        std::printf("  %-6s %11lld %11.3f %11.3f %9.3f %11.0f %8.1f\n", r.name.c_str(),
                    static_cast<long long>(r.parameters), r.first_loss, r.train_loss, r.val_loss, r.tokens_per_s,
                    r.seconds);
    std::printf("\n  Losses are nats per predicted byte (uniform guessing: ln 257 = %.2f). GPT-2 and PaLM predict\n"
                "  every next byte; T5 predicts only the dropped spans, given the rest, so its loss is not\n"
                "  comparable with theirs.\n", std::log(257.0));

    std::printf("\nGPT-2 continues \"the \" (temperature 0.7, top-k 20):\n%s\n", runs[0].sample.c_str());
    std::printf("\nPaLM continues \"the \" (temperature 0.7, top-k 20):\n%s\n", runs[1].sample.c_str());
    std::printf("\nT5 fills the gaps of a held-out sentence (greedy):\n  input:  %s\n  output: %s\n",
                runs[2].sample_prompt.c_str(), runs[2].sample.c_str());
}
