// llmblocks/ops/activation.hpp — differentiable activations of the
// feed-forward blocks: GELU (exact: BERT; tanh "gelu_new": GPT-2, GPT-3),
// ReLU (original T5), SiLU, and the gated units of Shazeer's "GLU Variants
// Improve Transformer" (2020): SwiGLU (PaLM, Llama) and GEGLU (T5 v1.1's
// "gated-gelu", with the tanh GELU).
#pragma once

#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/kernels/elementwise.hpp"
#include "llmblocks/ops/common.hpp"

namespace llmblocks {

// Which GELU: the exact x * Phi(x), or the tanh approximation of Hendrycks & Gimpel.
enum class GeluKind { Exact, Tanh };

namespace detail {

enum class Activation { Gelu, GeluTanh, Relu, Silu };

inline const char* activation_name(Activation a) {
    switch (a) {
        case Activation::Gelu: return "gelu";
        case Activation::GeluTanh: return "gelu_tanh";
        case Activation::Relu: return "relu";
        default: return "silu";
    }
}

template <class T>
void activation_forward(Activation a, T* out, const T* inp, index_t n) {
    switch (a) {
        case Activation::Gelu: kernels::gelu_forward(out, inp, n); break;
        case Activation::GeluTanh: kernels::gelu_tanh_forward(out, inp, n); break;
        case Activation::Relu: kernels::relu_forward(out, inp, n); break;
        case Activation::Silu: kernels::silu_forward(out, inp, n); break;
    }
}

// dinp += f'(inp) * dout
template <class T>
void activation_backward(Activation a, T* dinp, const T* inp, const T* dout, index_t n) {
    switch (a) {
        case Activation::Gelu: kernels::gelu_backward(dinp, inp, dout, n); break;
        case Activation::GeluTanh: kernels::gelu_tanh_backward(dinp, inp, dout, n); break;
        case Activation::Relu: kernels::relu_backward(dinp, inp, dout, n); break;
        case Activation::Silu: kernels::silu_backward(dinp, inp, dout, n); break;
    }
}

template <class T>
Variable<T> activation(Activation a, const Variable<T>& x) {
    const char* name = activation_name(a);
    require_defined(name, x, "input");
    const Tensor<T> X = x.value().contiguous();
    Tensor<T> out = Tensor<T>::empty(X.shape());
    const index_t n = out.numel();
    activation_forward(a, out.data(), X.data(), n);  // out = f(x)
    return record_op<T>(name, out, {x}, [a, X, n](const Tensor<T>& dout, const std::vector<T*>& d) {
        if (d[0]) activation_backward(a, d[0], X.data(), dout.data(), n);  // dx += f'(x) * dout
    });
}

// out = f(gate) * up: the gated linear unit family.
template <class T>
Variable<T> gated(Activation a, const char* name, const Variable<T>& gate, const Variable<T>& up) {
    require_defined(name, gate, "gate");
    require_defined(name, up, "up");
    LLMBLOCKS_CHECK(gate.shape() == up.shape(), name, ": gate and up shapes differ: gate ", gate.shape(), " vs up ",
                    up.shape());
    const Tensor<T> G = gate.value().contiguous();
    const Tensor<T> U = up.value().contiguous();
    const index_t n = G.numel();
    Tensor<T> act = Tensor<T>::empty(G.shape());
    activation_forward(a, act.data(), G.data(), n);  // act = f(gate)
    Tensor<T> out = Tensor<T>::empty(G.shape());
    kernels::mul(out.data(), act.data(), U.data(), n);  // out = act * up
    // The backward recomputes act rather than keeping it: one activation-sized buffer less per layer.
    return record_op<T>(name, out, {gate, up}, [a, G, U, n](const Tensor<T>& dout, const std::vector<T*>& d) {
        Tensor<T> tmp = Tensor<T>::empty({n});
        if (d[1]) {
            // out = act * up  =>  dup += dout * act
            Tensor<T> act = Tensor<T>::empty({n});
            activation_forward(a, act.data(), G.data(), n);
            kernels::mul(tmp.data(), dout.data(), act.data(), n);
            kernels::axpy(d[1], T(1), tmp.data(), n);
        }
        if (d[0]) {
            // out = f(gate) * up  =>  dgate += f'(gate) * (dout * up)
            kernels::mul(tmp.data(), dout.data(), U.data(), n);
            activation_backward(a, d[0], G.data(), tmp.data(), n);
        }
    });
}

}  // namespace detail

// GELU, exact: x * Phi(x).
template <class T>
Variable<T> gelu(const Variable<T>& x) {
    return detail::activation(detail::Activation::Gelu, x);
}
// GELU, tanh approximation ("gelu_new" of GPT-2).
template <class T>
Variable<T> gelu_tanh(const Variable<T>& x) {
    return detail::activation(detail::Activation::GeluTanh, x);
}
template <class T>
Variable<T> relu(const Variable<T>& x) {
    return detail::activation(detail::Activation::Relu, x);
}
// SiLU (swish): x * sigmoid(x).
template <class T>
Variable<T> silu(const Variable<T>& x) {
    return detail::activation(detail::Activation::Silu, x);
}
// SwiGLU: silu(gate) * up (PaLM: down(silu(gate(x)) * up(x))).
template <class T>
Variable<T> swiglu(const Variable<T>& gate, const Variable<T>& up) {
    return detail::gated(detail::Activation::Silu, "swiglu", gate, up);
}
// GEGLU: gelu(gate) * up; T5 v1.1 "gated-gelu" uses the tanh GELU (the default).
template <class T>
Variable<T> geglu(const Variable<T>& gate, const Variable<T>& up, GeluKind kind = GeluKind::Tanh) {
    return detail::gated(kind == GeluKind::Tanh ? detail::Activation::GeluTanh : detail::Activation::Gelu, "geglu", gate, up);
}

}  // namespace llmblocks
