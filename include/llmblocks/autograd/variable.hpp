// llmblocks/autograd/variable.hpp — the reference reverse-mode autograd:
// Variable<T>, the no_grad guard and backward().
//
// One node type, as in micrograd: a Node holds the value tensor, the gradient
// tensor, the nodes it was computed from and a backward closure. Every op in
// ops/ computes its value with the kernels and, when a gradient is wanted,
// records a node whose closure runs the matching backward kernel. backward()
// sorts the graph topologically and calls the closures from the output back to
// the leaves.
//
// Rules (the same as PyTorch's):
// - A leaf is a Variable built from a tensor; it wants a gradient when
//   requires_grad is set (parameters). An op's result wants one when any input
//   does and gradients are enabled; otherwise it is a plain leaf and nothing is
//   recorded (so inference holds no activations).
// - backward() ACCUMULATES into the .grad() of every leaf that wants one, so
//   several backward calls sum their gradients until zero_grad().
// - The gradient of an intermediate result is freed as soon as it has been
//   passed on, and backward() frees the graph (inputs and closures, with the
//   tensors they saved) unless asked to retain it. Memory then returns to what
//   it was before the forward pass, plus whatever results the caller still holds.
// - no_grad() returns an RAII guard (a thread_local flag) under which ops
//   record nothing.
//
// A custom op is one call to record_op(name, value, {inputs}, closure); the
// closure receives the output gradient and one pointer per input into that
// input's gradient buffer (contiguous, the input's shape), to be ACCUMULATED
// into (+=), or null when the input wants no gradient: the kernels' convention.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <unordered_set>
#include <utility>
#include <vector>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/tensor.hpp"

namespace llmblocks {

namespace detail {
inline bool& grad_mode_flag() {
    thread_local bool enabled = true;
    return enabled;
}
}  // namespace detail

// True unless a no_grad guard is alive on this thread.
inline bool is_grad_enabled() { return detail::grad_mode_flag(); }

// While alive, ops on this thread record no graph (inference, optimizer steps,
// finite differences). Guards nest: the destructor restores the previous mode.
class NoGradGuard {
public:
    NoGradGuard() : previous_(detail::grad_mode_flag()) { detail::grad_mode_flag() = false; }
    ~NoGradGuard() { detail::grad_mode_flag() = previous_; }
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;

private:
    bool previous_;
};

// auto guard = no_grad();  — the scope below records nothing.
[[nodiscard]] inline NoGradGuard no_grad() { return NoGradGuard(); }

// One value in the graph. Users see it through Variable<T>.
template <class T>
struct Node {
    // Receives the output gradient (contiguous, the value's shape) and one
    // pointer per input to accumulate that input's gradient into (null: not wanted).
    using BackwardFn = std::function<void(const Tensor<T>& dout, const std::vector<T*>& dinputs)>;

    Tensor<T> value;
    Tensor<T> grad;  // contiguous, value's shape; undefined until a backward reaches this node
    bool requires_grad = false;
    bool is_leaf = true;
    bool graph_freed = false;  // an earlier backward() released inputs and closure
    const char* op = "leaf";
    std::vector<std::shared_ptr<Node>> inputs;
    BackwardFn backward_fn;

    Node() = default;
    Node(const Node&) = delete;
    Node& operator=(const Node&) = delete;
    // Releases a long chain of unused inputs iteratively: a graph that is
    // dropped without backward() cannot overflow the stack.
    ~Node() {
        std::vector<std::shared_ptr<Node>> pending = std::move(inputs);
        while (!pending.empty()) {
            std::shared_ptr<Node> n = std::move(pending.back());
            pending.pop_back();
            if (n && n.use_count() == 1) {
                for (auto& in : n->inputs) pending.push_back(std::move(in));
                n->inputs.clear();
            }
        }
    }
};

// A shared handle to a Node: copying a Variable shares the value and gradient.
template <class T>
class Variable {
public:
    using value_type = T;
    using BackwardFn = typename Node<T>::BackwardFn;

    // An undefined Variable (used for "no bias").
    Variable() = default;

    // A leaf holding `value`; requires_grad marks a parameter.
    explicit Variable(Tensor<T> value, bool requires_grad = false) : node_(std::make_shared<Node<T>>()) {
        LLMBLOCKS_CHECK(value.defined(), "Variable: the value tensor is undefined");
        node_->value = std::move(value);
        node_->requires_grad = requires_grad;
    }

    bool defined() const { return node_ != nullptr; }
    const Tensor<T>& value() const { return checked("value")->value; }
    // The accumulated gradient: defined for leaves that want one after a backward
    // has reached them; intermediate results do not keep theirs.
    const Tensor<T>& grad() const { return checked("grad")->grad; }
    bool requires_grad() const { return checked("requires_grad")->requires_grad; }
    bool is_leaf() const { return checked("is_leaf")->is_leaf; }
    // The op that produced this value ("leaf" for leaves).
    const char* op() const { return checked("op")->op; }

    // Only leaves may change it (an op result's need follows from its inputs).
    Variable& set_requires_grad(bool on) {
        LLMBLOCKS_CHECK(is_leaf(), "set_requires_grad: '", op(), "' result of shape ", shape(),
                        " is not a leaf; use detach() to make one");
        node_->requires_grad = on;
        return *this;
    }

    const Shape& shape() const { return value().shape(); }
    index_t dim() const { return value().dim(); }
    index_t size(index_t d) const { return value().size(d); }
    index_t numel() const { return value().numel(); }
    T item() const { return value().item(); }

    // A new leaf sharing this value, cut off from the graph.
    Variable detach() const { return Variable(value(), false); }

    // Sets the gradient to zero (keeps the buffer: no reallocation per step).
    void zero_grad() {
        if (checked("zero_grad")->grad.defined()) node_->grad.zero_();
    }
    // Drops the gradient buffer (the next backward allocates a fresh one).
    void clear_grad() { checked("clear_grad")->grad = Tensor<T>(); }

    // d(this)/d(leaves) for a one-element result (a loss).
    void backward(bool retain_graph = false) {
        LLMBLOCKS_CHECK(numel() == 1, "backward: result '", op(), "' has shape ", shape(),
                        "; pass the output gradient explicitly for a non-scalar result");
        backward(Tensor<T>::ones(shape()), retain_graph);
    }
    // Vector-Jacobian product: accumulates dout^T * d(this)/d(leaf) into every leaf.
    void backward(const Tensor<T>& dout, bool retain_graph = false);

    // ---- for ops ---------------------------------------------------------------------
    Node<T>* node() const { return node_.get(); }
    const std::shared_ptr<Node<T>>& node_ptr() const { return node_; }

    // The result of op `op` computed from `inputs`: records `backward_fn` when
    // gradients are enabled and some input wants one, else returns a plain leaf
    // (the closure and what it captured are dropped at once).
    static Variable from_op(const char* op, Tensor<T> value, const std::vector<Variable>& inputs, BackwardFn backward_fn) {
        Variable out(std::move(value), false);
        out.node_->op = op;
        if (!is_grad_enabled()) return out;
        bool wanted = false;
        for (const Variable& in : inputs) wanted = wanted || (in.defined() && in.node_->requires_grad);
        if (!wanted) return out;
        out.node_->requires_grad = true;
        out.node_->is_leaf = false;
        out.node_->inputs.reserve(inputs.size());
        for (const Variable& in : inputs) out.node_->inputs.push_back(in.node_);
        out.node_->backward_fn = std::move(backward_fn);
        return out;
    }

private:
    Node<T>* checked(const char* what) const {
        LLMBLOCKS_CHECK(node_ != nullptr, "Variable::", what, ": the Variable is undefined");
        return node_.get();
    }

    std::shared_ptr<Node<T>> node_;
};

template <class T>
Variable(Tensor<T>) -> Variable<T>;
template <class T>
Variable(Tensor<T>, bool) -> Variable<T>;

using VariableF = Variable<float>;
using VariableD = Variable<double>;

// Short form used by every op: Variable<T>::from_op. An undefined input (no
// bias) may appear in `inputs`; its gradient pointer is null.
template <class T>
Variable<T> record_op(const char* op, Tensor<T> value, const std::vector<Variable<T>>& inputs,
                      typename Variable<T>::BackwardFn backward_fn) {
    return Variable<T>::from_op(op, std::move(value), inputs, std::move(backward_fn));
}

namespace detail {

// Nodes that want a gradient, reachable from `root`, inputs before users
// (iterative depth-first search: deep graphs do not overflow the stack). The
// list owns the nodes, so freeing a node's inputs during backward() cannot
// destroy a node that is still to be visited.
template <class T>
std::vector<std::shared_ptr<Node<T>>> topological_order(const std::shared_ptr<Node<T>>& root) {
    std::vector<std::shared_ptr<Node<T>>> order;
    std::unordered_set<Node<T>*> visited;
    std::vector<std::pair<Node<T>*, std::size_t>> stack;
    std::vector<std::shared_ptr<Node<T>>> path;  // owners of the nodes on the stack
    stack.emplace_back(root.get(), 0);
    path.push_back(root);
    visited.insert(root.get());
    while (!stack.empty()) {
        auto& [node, next] = stack.back();
        if (next < node->inputs.size()) {
            const std::shared_ptr<Node<T>>& in = node->inputs[next++];
            if (in && in->requires_grad && visited.insert(in.get()).second) {
                stack.emplace_back(in.get(), 0);
                path.push_back(in);
            }
        } else {
            order.push_back(std::move(path.back()));
            path.pop_back();
            stack.pop_back();
        }
    }
    return order;
}

// The node's gradient buffer, zero-filled on first use.
template <class T>
T* grad_buffer(Node<T>& node) {
    if (!node.grad.defined()) node.grad = Tensor<T>::zeros(node.value.shape());
    return node.grad.data();
}

}  // namespace detail

template <class T>
void Variable<T>::backward(const Tensor<T>& dout, bool retain_graph) {
    Node<T>* root = checked("backward");
    LLMBLOCKS_CHECK(root->requires_grad, "backward: result '", root->op, "' of shape ", root->value.shape(),
                    " does not require grad (no input requires grad, or it was computed under no_grad)");
    LLMBLOCKS_CHECK(dout.defined() && dout.shape() == root->value.shape(), "backward: output gradient of shape ",
                    dout.defined() ? dout.shape() : Shape{}, " for result '", root->op, "' of shape ",
                    root->value.shape());
    const auto order = detail::topological_order(node_);
    for (const auto& node : order)
        LLMBLOCKS_CHECK(!node->graph_freed, "backward: the graph behind '", node->op, "' of shape ",
                        node->value.shape(),
                        " was freed by an earlier backward(); call backward(retain_graph=true) to reuse it");

    {
        // dL/d(root) += dout
        T* g = detail::grad_buffer(*root);
        const Tensor<T> d = dout.contiguous();
        for (index_t i = 0; i < d.numel(); ++i) g[i] += d.data()[i];
    }
    // The gradients themselves are computed without recording a graph.
    NoGradGuard guard;
    std::vector<T*> dinputs;
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        Node<T>& node = **it;
        if (node.is_leaf) continue;
        if (node.grad.defined()) {
            dinputs.clear();
            for (const auto& in : node.inputs)
                dinputs.push_back(in && in->requires_grad ? detail::grad_buffer(*in) : nullptr);
            node.backward_fn(node.grad, dinputs);
        }
        node.grad = Tensor<T>();  // intermediate gradients are not kept
        if (!retain_graph) {
            node.backward_fn = nullptr;  // releases the saved tensors
            node.inputs.clear();         // releases the inputs (and their values)
            node.graph_freed = true;
        }
    }
}

// Zeroes the gradients of all `params`.
template <class T>
void zero_grad(std::vector<Variable<T>>& params) {
    for (auto& p : params) p.zero_grad();
}

}  // namespace llmblocks
