using System;
using System.IO;
using ModelGen;
using ModelGen.Samples;
using ModelGen.Training;

// Part 1: a ResNet-style network with BatchNormalization on the Digits images (8x8x1), the same seeded 80/20 split as the
// other Digits samples. Part 2: transfer learning in two phases, as Keras' guide does it: a backbone pretrained on
// digits 0-4 is frozen under a new head for digits 5-9; then its top block is unfrozen and trained with a lower learning
// rate and a fresh optimizer.
var (train, test) = LabeledData.Load(Path.Combine(AppContext.BaseDirectory, "data", "digits.csv")).Split(testFraction: 0.2, seed: 42);
(train, test) = (train.Scale(1f / 16), test.Scale(1f / 16));
var stopEarly = () => new EarlyStopping(monitor: "val_loss", patience: 5, restoreBestWeights: true);

var resnet = new DigitsResNet(maxBatchSize: 32, seed: 1);
Console.WriteLine(resnet.Summary());
var clock = System.Diagnostics.Stopwatch.StartNew();
resnet.Fit(train.Features, train.Labels, new Adam(0.002f), epochs: 30, batchSize: 32, validationSplit: 0.1, seed: 1, verbose: Verbosity.Silent, callbacks: [stopEarly()]);
Console.WriteLine($"ResNet: training time {clock.Elapsed.TotalSeconds:0.00} s, test accuracy {resnet.Evaluate(test.Features, test.Labels).Accuracy:0.0000}");

// Part 2. Pretraining task: digits 0-4. Target task: digits 5-9, with a small training set (25 images) where transfer pays.
var (pretrainTrain, targetTrain, targetTest) = (train.Classes(0, 5), train.Classes(5, 5).Take(25), test.Classes(5, 5));
var pretrained = new DigitsPretrained(maxBatchSize: 32, seed: 2);
pretrained.Fit(pretrainTrain.Features, pretrainTrain.Labels, new Adam(0.002f), epochs: 20, batchSize: 32, validationSplit: 0.1, seed: 1, verbose: Verbosity.Silent, callbacks: [stopEarly()]);

var headOnly = new DigitsTransferHead(maxBatchSize: 32, seed: 3);
headOnly.CopyWeightsFrom(pretrained, "stem", "stemNorm", "conv1", "norm1", "conv2", "norm2");
headOnly.Fit(targetTrain.Features, targetTrain.Labels, new Adam(0.01f), epochs: 60, batchSize: 16, seed: 1, verbose: Verbosity.Silent);
Console.WriteLine($"phase 1, frozen backbone ({DigitsTransferHead.TrainableParameterCount} trainable of {DigitsTransferHead.ParameterCount}): " +
    $"test accuracy on 5-9 {headOnly.Evaluate(targetTest.Features, targetTest.Labels).Accuracy:0.0000}");

var fineTuned = new DigitsFineTuned(maxBatchSize: 32, seed: 4);
fineTuned.CopyWeightsFrom(headOnly, "stem", "stemNorm", "conv1", "norm1", "conv2", "norm2", "head");
fineTuned.Fit(targetTrain.Features, targetTrain.Labels, new Adam(0.001f), epochs: 20, batchSize: 16, seed: 1, verbose: Verbosity.Silent);
Console.WriteLine($"phase 2, top block unfrozen ({DigitsFineTuned.TrainableParameterCount} trainable): " +
    $"test accuracy on 5-9 {fineTuned.Evaluate(targetTest.Features, targetTest.Labels).Accuracy:0.0000}");

var scratch = new DigitsPretrained(maxBatchSize: 32, seed: 3); // the same network, untrained
scratch.Fit(targetTrain.Features, targetTrain.Labels, new Adam(0.002f), epochs: 60, batchSize: 16, seed: 1, verbose: Verbosity.Silent);
Console.WriteLine($"for comparison, the same network trained from scratch on the 25 images: test accuracy on 5-9 {scratch.Evaluate(targetTest.Features, targetTest.Labels).Accuracy:0.0000}");

/// <summary>A stem and two residual blocks (conv-BN-relu-conv-BN, add, relu), the second halving the image with a 1x1 projection.</summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
partial class DigitsResNet
{
    [Conv2D(16, 3, Padding = Padding.Same)] Conv2D stem;
    [BatchNormalization] BatchNormalization stemNorm;
    [Conv2D(16, 3, Padding = Padding.Same)] Conv2D block1Conv1;
    [BatchNormalization] BatchNormalization block1Norm1;
    [Conv2D(16, 3, Padding = Padding.Same)] Conv2D block1Conv2;
    [BatchNormalization] BatchNormalization block1Norm2;
    [Conv2D(32, 3, Padding = Padding.Same, Strides = 2)] Conv2D block2Conv1;
    [BatchNormalization] BatchNormalization block2Norm1;
    [Conv2D(32, 3, Padding = Padding.Same)] Conv2D block2Conv2;
    [BatchNormalization] BatchNormalization block2Norm2;
    [Conv2D(32, 1, Strides = 2)] Conv2D block2Projection;
    [GlobalAveragePooling2D] GlobalAveragePooling2D pool;
    [Dropout(0.2)] Dropout dropout;
    [Dense(10, Activation.Softmax)] Dense digit;

    [Graph]
    Tensor Forward([Shape(8, 8, 1)] Tensor image)
    {
        var x = Ops.Relu(stemNorm.Apply(stem.Apply(image)));
        var y = Ops.Relu(block1Norm1.Apply(block1Conv1.Apply(x)));
        x = Ops.Relu(Ops.Add(x, block1Norm2.Apply(block1Conv2.Apply(y))));
        y = Ops.Relu(block2Norm1.Apply(block2Conv1.Apply(x)));
        x = Ops.Relu(Ops.Add(block2Projection.Apply(x), block2Norm2.Apply(block2Conv2.Apply(y))));
        return digit.Apply(dropout.Apply(pool.Apply(x)));
    }
}

// The transfer-learning models share one backbone, layer for layer and name for name, so weights move between them by name.

/// <summary>The backbone with a head for digits 0-4 (and, untrained, the from-scratch baseline for 5-9).</summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
partial class DigitsPretrained
{
    [Conv2D(16, 3, Padding = Padding.Same)] Conv2D stem;
    [BatchNormalization] BatchNormalization stemNorm;
    [Conv2D(32, 3, Padding = Padding.Same)] Conv2D conv1;
    [BatchNormalization] BatchNormalization norm1;
    [Conv2D(32, 3, Padding = Padding.Same)] Conv2D conv2;
    [BatchNormalization] BatchNormalization norm2;
    [MaxPooling2D(2)] MaxPooling2D pool;
    [Flatten] Flatten flatten;
    [Dense(5, Activation.Softmax)] Dense pretrainingHead;

    [Graph]
    Tensor Forward([Shape(8, 8, 1)] Tensor image)
    {
        var x = Ops.Relu(stemNorm.Apply(stem.Apply(image)));
        x = Ops.Relu(norm1.Apply(conv1.Apply(x)));
        x = Ops.Relu(norm2.Apply(conv2.Apply(x)));
        return pretrainingHead.Apply(flatten.Apply(pool.Apply(x)));
    }
}

/// <summary>Phase 1: the whole backbone frozen, as Keras' base_model.trainable = False; a new head for digits 5-9.</summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
partial class DigitsTransferHead
{
    [Conv2D(16, 3, Padding = Padding.Same)] Conv2D stem;
    [BatchNormalization] BatchNormalization stemNorm;
    [Conv2D(32, 3, Padding = Padding.Same)] Conv2D conv1;
    [BatchNormalization] BatchNormalization norm1;
    [Conv2D(32, 3, Padding = Padding.Same)] Conv2D conv2;
    [BatchNormalization] BatchNormalization norm2;
    [MaxPooling2D(2)] MaxPooling2D pool;
    [Flatten] Flatten flatten;
    [Dense(5, Activation.Softmax)] Dense head;

    [Graph]
    Tensor Forward([Shape(8, 8, 1)] Tensor image) => head.Apply(flatten.Apply(pool.Apply(Backbone(image))));

    [Graph(Trainable = false)]
    Tensor Backbone([Shape(8, 8, 1)] Tensor image)
    {
        var x = Ops.Relu(stemNorm.Apply(stem.Apply(image)));
        x = Ops.Relu(norm1.Apply(conv1.Apply(x)));
        return Ops.Relu(norm2.Apply(conv2.Apply(x)));
    }
}

/// <summary>Phase 2: the top convolution unfrozen; its BatchNormalization stays frozen (inference mode), as Keras' guide advises.</summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
partial class DigitsFineTuned
{
    [Conv2D(16, 3, Padding = Padding.Same, Trainable = false)] Conv2D stem;
    [BatchNormalization(Trainable = false)] BatchNormalization stemNorm;
    [Conv2D(32, 3, Padding = Padding.Same, Trainable = false)] Conv2D conv1;
    [BatchNormalization(Trainable = false)] BatchNormalization norm1;
    [Conv2D(32, 3, Padding = Padding.Same)] Conv2D conv2;
    [BatchNormalization(Trainable = false)] BatchNormalization norm2;
    [MaxPooling2D(2)] MaxPooling2D pool;
    [Flatten] Flatten flatten;
    [Dense(5, Activation.Softmax)] Dense head;

    [Graph]
    Tensor Forward([Shape(8, 8, 1)] Tensor image)
    {
        var x = Ops.Relu(stemNorm.Apply(stem.Apply(image)));
        x = Ops.Relu(norm1.Apply(conv1.Apply(x)));
        x = Ops.Relu(norm2.Apply(conv2.Apply(x)));
        return head.Apply(flatten.Apply(pool.Apply(x)));
    }
}
