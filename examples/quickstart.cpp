// examples/quickstart.cpp — a first look at llmblocks, run by the README's
// first command: the four architectures side by side (from their configs
// alone), then tiny GPT-2-style and PaLM-style models trained for a few
// hundred AdamW steps on the text below, byte by byte.
#include <chrono>
#include <cstdio>
#include <string>

#include "llmblocks/llmblocks.hpp"

namespace lb = llmblocks;

// Written for this example; any text works.
constexpr const char* kText =
    "A transformer reads a sequence of tokens and predicts the next one. Each block mixes the tokens "
    "with attention and then transforms each token with a feed-forward network. GPT-2 adds learned "
    "positions and normalises before each sublayer. GPT-3 keeps that design and alternates dense "
    "layers with locally banded ones. PaLM runs attention and the feed-forward network in parallel, "
    "shares one key and value head among all query heads, rotates queries and keys by their "
    "positions, and drops every bias. T5 pairs an encoder with a decoder and adds a learned bias "
    "for each relative distance, bucketed so that far tokens share a bucket. ";

void print_architectures() {
    std::printf("%-16s %16s %18s %18s\n", "preset", "parameters", "train FLOPs/token", "KV bytes/token");
    auto row = [](const char* name, const lb::ModelCounts& c) {
        std::printf("%-16s %14.3f B %16.3g %18lld\n", name, c.parameters / 1e9, c.training_flops_per_token,
                    static_cast<long long>(c.kv_cache_bytes_per_token));
    };
    row("GPT-2 124M", lb::count(lb::GPT2Config::gpt2_preset("124M")));
    row("GPT-3 175B", lb::count(lb::GPT2Config::gpt3_preset("175B")));
    row("PaLM 540B", lb::count(lb::PaLMConfig::preset("540B")));
    row("T5 11B", lb::count(lb::T5Config::preset("11B")));
    std::printf("\n");
}

// Trains `model` on random windows of the text and prints the loss every 50 steps.
template <class Model>
void train(const char* name, Model& model, int steps) {
    std::string text;
    for (int i = 0; i < 8; ++i) text += kText;
    lb::WindowSampler sampler(lb::TokenDataset(lb::byte_tokens(text)), /*B=*/8, /*T=*/64, /*seed=*/1);
    lb::AdamW<float> optimizer(lb::named_parameters<float>(model), {.lr = 2e-3, .weight_decay = 0.0});
    const auto start = std::chrono::steady_clock::now();
    float first = 0, last = 0;
    for (int step = 1; step <= steps; ++step) {
        const lb::TokenBatch batch = sampler.next();
        auto loss = model.loss(batch.inputs, batch.targets);
        loss.backward();
        optimizer.step();
        optimizer.zero_grad();
        last = loss.item();
        if (step == 1) first = last;
        if (step % 50 == 0 || step == 1) std::printf("  %-6s step %4d  loss %.3f\n", name, step, last);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("  %-6s %d params, loss %.3f -> %.3f, %.0f tokens/s\n\n", name,
                static_cast<int>(lb::parameter_count(lb::named_parameters<float>(model))), first, last,
                steps * 8 * 64 / seconds);
}

int main() {
    print_architectures();
    lb::Rng rng(0);
    lb::GPT2Model<float> gpt2(lb::GPT2Config::gpt2_preset("tiny"), rng);
    train("GPT-2", gpt2, 200);
    lb::PaLMModel<float> palm(lb::PaLMConfig::preset("tiny"), rng);
    train("PaLM", palm, 200);
}
