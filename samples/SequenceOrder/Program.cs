using System;
using System.Linq;
using ModelGen;
using ModelGen.Kernels;
using ModelGen.Training;

// A sequence task the sample generates: token sequences of 4 to 16 tokens, padded with 0 to 16. Each holds one 4 and one 7
// among filler tokens; the label is whether the 4 comes first. Order matters and lengths vary, so the model needs the LSTM's
// memory and the mask: Embedding(MaskZero) marks the padding, and the LSTM carries its state over it.
const int Steps = 16;
var (trainX, trainY) = Generate(4000, seed: 1);
var (testX, testY) = Generate(1000, seed: 2);

var model = new OrderClassifier(maxBatchSize: 64, seed: 0);
Console.WriteLine(model.Summary());
var clock = System.Diagnostics.Stopwatch.StartNew();
model.Fit(trainX, trainY, new Adam(0.01f), epochs: 15, batchSize: 64, validationSplit: 0.1, seed: 1,
    callbacks: [new EarlyStopping(monitor: "val_loss", patience: 3, restoreBestWeights: true)]);
Console.WriteLine($"training time: {clock.Elapsed.TotalSeconds:0.00} s");
var result = model.Evaluate(testX, testY);
Console.WriteLine($"test loss: {result.Loss:0.0000}");
Console.WriteLine($"test accuracy: {result.Accuracy:0.0000}");

// The mask at work: the same tokens padded after (as trained) and before (never seen) get the same answer, since the LSTM
// carries its state unchanged over padding wherever it is.
int[] tokens = { 5, 7, 8, 8, 4, 1 };
var probe = new float[2 * Steps];
for (int i = 0; i < tokens.Length; i++)
{
    probe[i] = tokens[i];
    probe[2 * Steps - tokens.Length + i] = tokens[i];
}
var answers = new float[2];
model.Predict(probe, answers);
Console.WriteLine($"P(4 before 7) for 5 7 8 8 4 1, padded after: {answers[0]:0.0000}, padded before: {answers[1]:0.0000}");

static (float[] X, float[] Y) Generate(int count, int seed)
{
    var random = new SeededRandom(seed);
    var x = new float[count * Steps];
    var y = new float[count];
    int[] filler = { 1, 2, 3, 5, 6, 8, 9 };
    for (int n = 0; n < count; n++)
    {
        int length = 4 + random.NextInt(Steps - 3);
        for (int t = 0; t < length; t++) x[n * Steps + t] = filler[random.NextInt(filler.Length)];
        int four = random.NextInt(length), seven;
        do seven = random.NextInt(length); while (seven == four);
        x[n * Steps + four] = 4;
        x[n * Steps + seven] = 7;
        y[n] = four < seven ? 1 : 0;
    }
    return (x, y);
}

[Sequential(Loss = Loss.BinaryCrossentropy)]
partial class OrderClassifier
{
    [Input(16)] Input tokens;
    [Embedding(10, 8, MaskZero = true)] Embedding embed;
    [LSTM(16)] LSTM lstm;
    [Dense(1, Activation.Sigmoid)] Dense fourFirst;
}
