namespace ModelGen;

/// <summary>
/// One input of a model. Generic code (Fit, Evaluate) sees a sample's inputs side by side in one row of
/// <see cref="IModel.InputSize"/> floats; this input occupies <see cref="Size"/> of them from <see cref="Offset"/>.
/// </summary>
public sealed record ModelInput(string Name, int Size, int Offset, string Shape);

/// <summary>
/// One output of a model, with the loss that trains it (Keras' <c>compile(loss={name: ...}, loss_weights={name: ...})</c>).
/// Outputs sit side by side in a row of <see cref="IModel.OutputSize"/> floats, their targets in a row of
/// <see cref="IModel.TargetSize"/>.
/// </summary>
public sealed record ModelOutput(string Name, int Size, int Offset, string Shape, Loss Loss, float LossWeight, int TargetSize, int TargetOffset);
